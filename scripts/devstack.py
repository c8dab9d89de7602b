"""``make run``: the whole product on one machine with nothing installed beyond Python.

SQLite file database, the embedded Redis, the FreeSWITCH simulator, the API under
gunicorn, the RQ worker, the dialer and rq-dashboard, all under ``VAR_DIR``
(default ``./var``). Prints a demo account, its API key, a ready audio file and
curl commands to paste. The same processes run on MariaDB, Redis and a real
FreeSWITCH when DATABASE_URL, REDIS_URL and FS_* are set.
"""

from __future__ import annotations

import io
import json
import os
import shutil
import sys
from decimal import Decimal
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import numpy as np  # noqa: E402
import soundfile as sf  # noqa: E402

from core import redis_conn  # noqa: E402
from core.settings import load_settings  # noqa: E402

DEMO_EMAIL = "demo@zenscall.local"
DEMO_PASSWORD = "demo-pass-123"


def demo_message() -> bytes:
    """A 5-second two-tone chime, standing in for a recorded announcement."""
    rate = 16000
    t = np.arange(rate * 5) / rate
    tone = 0.25 * np.sin(2 * np.pi * np.where((t % 1.0) < 0.5, 660, 880) * t)
    buf = io.BytesIO()
    sf.write(buf, tone.astype("float32"), rate, format="WAV", subtype="PCM_16")
    return buf.getvalue()


def ensure_demo(settings) -> dict[str, str]:  # type: ignore[no-untyped-def]
    """The demo account, key and audio; created once and remembered in VAR_DIR/demo.json."""
    import sqlalchemy as sa

    from core.audio import AudioStore, convert_upload
    from core.db import make_engine, make_session_factory
    from core.models import AudioFile, User
    from services.accounts import create_account

    state_file = settings.var_dir / "demo.json"
    sessions = make_session_factory(make_engine(settings.database_url))
    with sessions() as session:
        if state_file.exists():
            demo = json.loads(state_file.read_text())
            if session.execute(sa.select(User.id).where(User.id == demo["user_id"])).first():
                return demo  # type: ignore[no-any-return]
        created = create_account(session, settings, name="Demo Traders (Karachi)", email=DEMO_EMAIL,
                                 password=DEMO_PASSWORD, balance=Decimal("500"))
        converted = convert_upload(demo_message(), max_bytes=settings.max_audio_bytes,
                                   max_seconds=settings.max_audio_seconds)
        audio = AudioFile(account_id=created.account.id, name="Demo announcement", original_filename="demo.wav",
                          source_format=converted.source_format, duration_ms=converted.duration_ms,
                          size_bytes=len(converted.wav_bytes), sha256=converted.sha256)
        session.add(audio)
        session.flush()
        AudioStore(settings.audio_dir).save(audio.id, converted.wav_bytes)
        session.commit()
        demo = {"account_id": created.account.id, "user_id": created.user.id, "api_key": created.api_key,
                "audio_id": audio.id, "email": DEMO_EMAIL, "password": DEMO_PASSWORD}
    state_file.write_text(json.dumps(demo, indent=2))
    state_file.chmod(0o600)
    return demo


def main() -> None:
    settings = load_settings()
    settings.var_dir.mkdir(parents=True, exist_ok=True)
    redis_url = redis_conn.redis_url(settings)  # starts the embedded Redis when REDIS_URL is unset

    from alembic import command

    from api.cli import alembic_config

    command.upgrade(alembic_config(settings.database_url), "head")
    demo = ensure_demo(settings)

    port = os.environ.get("WEB_PORT", "8000")
    fs_port = os.environ.get("FS_PORT", "8021")
    base = f"http://127.0.0.1:{port}/api/v1"
    dashboard = f"http://127.0.0.1:{os.environ.get('DASHBOARD_PORT', '9181')}/"
    key = demo["api_key"]
    print(f"""
ZensCall is starting (database {settings.database_url.split('://')[0]}, Redis {redis_url},
FreeSWITCH {'simulator on 127.0.0.1:' + fs_port if 'FS_HOST' not in os.environ else os.environ['FS_HOST']}).

  Console    http://127.0.0.1:{port}/   (sign in with the demo login)
  Demo login {demo['email']} / {demo['password']}
  API        {base}          docs: {base}/docs
  Dashboard  {dashboard}   (user admin, password in {settings.var_dir}/dashboard.password)
  API key    {key}
  Audio id   {demo['audio_id']}

Paste these (the simulator answers numbers ending in 6 and plays the message to the end;
1 answers briefly, 2 is busy, 3 rings out, 4 is rejected, 5 does not exist):

  curl -s -X POST {base}/calls -H "Authorization: Bearer {key}" -H "Content-Type: application/json" \\
       -d '{{"phone_number": "03001234566", "audio_id": "{demo['audio_id']}"}}'
  curl -s "{base}/calls?page=1&per_page=20" -H "Authorization: Bearer {key}"
  curl -s {base}/balance -H "Authorization: Bearer {key}"

Ctrl-C stops everything.
""", flush=True)

    dash_pw_file = settings.var_dir / "dashboard.password"
    if not dash_pw_file.exists():
        import secrets

        dash_pw_file.write_text(secrets.token_urlsafe(24))
        dash_pw_file.chmod(0o600)
    # the dashboard reads its password from the file: never on a command line or in the environment
    env = {**os.environ, "REDIS_URL": redis_url, "VAR_DIR": str(settings.var_dir), "WEB_PORT": port,
           "FS_PORT": fs_port, "DASHBOARD_PASSWORD_FILE": str(dash_pw_file),
           "DASHBOARD_PORT": os.environ.get("DASHBOARD_PORT", "9181"),
           # webhooks to a receiver on this machine (http://127.0.0.1:...) are what development needs
           "WEBHOOK_ALLOW_PRIVATE": os.environ.get("WEBHOOK_ALLOW_PRIVATE", "true")}
    env.pop("DASHBOARD_PASSWORD", None)
    # with FS_HOST set a real FreeSWITCH is used: every process of Procfile.dev but the simulator
    processes = [] if "FS_HOST" not in os.environ else ["web", "worker", "dialer", "webhooks", "webhook-sweeper",
                                                        "dashboard"]
    honcho = shutil.which("honcho", path=str(Path(sys.executable).parent)) or "honcho"
    os.execvpe(honcho, [honcho, "-d", str(ROOT), "-f", str(ROOT / "Procfile.dev"), "start", *processes], env)


if __name__ == "__main__":
    main()
