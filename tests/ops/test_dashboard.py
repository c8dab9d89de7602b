"""rq-dashboard (``python -m dashboard``) can requeue and delete any job: it refuses to start
without a real password, takes it from the environment or a file (never the command line),
checks it on every request and refuses requests other sites make the operator's browser send."""

from __future__ import annotations

import base64
import os
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import redis
from rq import Queue

from core.settings import ROOT, ConfigError, DashboardSettings, load_dashboard_settings
from dashboard import create_dashboard

PASSWORD = "a-dashboard-password-of-some-length"


@pytest.fixture()
def dashboard_env(monkeypatch: pytest.MonkeyPatch, ops_redis_url: str) -> pytest.MonkeyPatch:
    for name in ("DASHBOARD_USER", "DASHBOARD_PASSWORD", "DASHBOARD_PASSWORD_FILE", "DASHBOARD_BIND",
                 "DASHBOARD_PORT"):
        monkeypatch.delenv(name, raising=False)
    monkeypatch.setenv("REDIS_URL", ops_redis_url)
    return monkeypatch


@pytest.mark.parametrize(("password", "message"), [
    (None, "DASHBOARD_PASSWORD .or DASHBOARD_PASSWORD_FILE. is required"),
    ("", "DASHBOARD_PASSWORD .or DASHBOARD_PASSWORD_FILE. is required"),
    ("change-me", "placeholder"),
    ("Change-Me-to-something-long-enough", "placeholder"),
    ("fifteen-chars-x", "at least 16 characters"),
])
def test_refuses_an_unsafe_password(dashboard_env: pytest.MonkeyPatch, password: str | None, message: str) -> None:
    if password is not None:
        dashboard_env.setenv("DASHBOARD_PASSWORD", password)
    with pytest.raises(ConfigError, match=message):
        load_dashboard_settings()


def test_password_from_the_environment_or_a_file(dashboard_env: pytest.MonkeyPatch, tmp_path: Path) -> None:
    dashboard_env.setenv("DASHBOARD_PASSWORD", "sixteen-chars-ok")
    config = load_dashboard_settings()
    assert (config.username, config.password, config.bind, config.port) == ("admin", "sixteen-chars-ok",
                                                                            "127.0.0.1", 9181)
    secret = tmp_path / "dashboard.password"
    secret.write_text(PASSWORD + "\n")
    dashboard_env.setenv("DASHBOARD_PASSWORD_FILE", str(secret))
    with pytest.raises(ConfigError, match="not both"):
        load_dashboard_settings()
    dashboard_env.delenv("DASHBOARD_PASSWORD")
    assert load_dashboard_settings().password == PASSWORD
    secret.write_text("change-me\n")
    with pytest.raises(ConfigError, match="placeholder"):
        load_dashboard_settings()
    dashboard_env.setenv("DASHBOARD_PASSWORD_FILE", str(tmp_path / "missing"))
    with pytest.raises(ConfigError, match="cannot read"):
        load_dashboard_settings()


def test_needs_redis_url(dashboard_env: pytest.MonkeyPatch) -> None:
    dashboard_env.setenv("DASHBOARD_PASSWORD", PASSWORD)
    dashboard_env.delenv("REDIS_URL")
    with pytest.raises(ConfigError, match="REDIS_URL"):
        load_dashboard_settings()


def _basic(user: str, password: str) -> dict[str, str]:
    return {"Authorization": "Basic " + base64.b64encode(f"{user}:{password}".encode()).decode()}


@pytest.fixture()
def dashboard(ops_redis_url: str) -> Any:
    config = DashboardSettings(username="admin", password=PASSWORD, bind="127.0.0.1", port=0, redis_url=ops_redis_url)
    app = create_dashboard(config)
    app.config["TESTING"] = True
    return app.test_client()


def test_every_request_needs_the_credentials(dashboard: Any) -> None:
    for headers in ({}, _basic("admin", ""), _basic("admin", PASSWORD[:-1]), _basic("root", PASSWORD),
                    {"Authorization": f"Bearer {PASSWORD}"}):
        for path in ("/", "/0/data/queues.json", "/static/css/main.css", "/requeue/default"):
            response = dashboard.get(path, headers=headers)
            assert response.status_code == 401, (path, headers)
            assert response.headers["WWW-Authenticate"].startswith('Basic realm="ZensCall queues"')
    response = dashboard.get("/", headers=_basic("admin", PASSWORD))
    assert response.status_code == 200
    assert response.headers["Cache-Control"] == "no-store" and response.headers["X-Frame-Options"] == "DENY"


def test_other_sites_cannot_make_the_operator_delete_jobs(dashboard: Any, ops_redis_url: str) -> None:
    connection = redis.Redis.from_url(ops_redis_url)
    queue = Queue(f"dash-{os.getpid()}", connection=connection)
    job = queue.enqueue("campaigns.importer.import_campaign", "00000000-0000-0000-0000-000000000000")
    auth = _basic("admin", PASSWORD)
    try:
        for hostile in ({"Sec-Fetch-Site": "cross-site"}, {"Sec-Fetch-Site": "same-site"},
                        {"Origin": "https://evil.example"}):
            response = dashboard.post(f"/job/{job.id}/delete", headers={**auth, **hostile})
            assert response.status_code == 403, hostile
            assert queue.fetch_job(job.id) is not None
        # rq-dashboard requeues on a GET: a cross-site image is refused as well
        image = dashboard.get(f"/requeue/{queue.name}", headers={**auth, "Sec-Fetch-Site": "cross-site"})
        assert image.status_code == 403
        response = dashboard.post(f"/job/{job.id}/delete",
                                  headers={**auth, "Sec-Fetch-Site": "same-origin", "Origin": "http://localhost"})
        assert response.status_code == 200, response.get_data(as_text=True)
        assert queue.fetch_job(job.id) is None
    finally:
        queue.delete(delete_jobs=True)


def _free_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])


def _run(env: dict[str, str], *args: str) -> subprocess.Popen[str]:
    clean = {k: v for k, v in os.environ.items() if not k.startswith("DASHBOARD_")}
    return subprocess.Popen([sys.executable, "-m", "dashboard", *args], cwd=ROOT, env={**clean, **env},
                            stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)


def test_the_process_refuses_to_start_unsafe(ops_redis_url: str) -> None:
    for password in ("", "change-me", "short"):
        proc = _run({"REDIS_URL": ops_redis_url, "DASHBOARD_PASSWORD": password, "DASHBOARD_PORT": str(_free_port())})
        _, err = proc.communicate(timeout=60)
        assert proc.returncode == 2, err
        assert "refusing to start" in err
    proc = _run({"REDIS_URL": ops_redis_url}, "--password", PASSWORD)
    _, err = proc.communicate(timeout=60)
    assert proc.returncode == 1 and "never the command line" in err


def test_the_process_serves_with_the_password_kept_off_its_command_line(ops_redis_url: str, tmp_path: Path) -> None:
    import urllib.error
    import urllib.request

    secret = tmp_path / "pw"
    secret.write_text(PASSWORD)
    port = _free_port()
    proc = _run({"REDIS_URL": ops_redis_url, "DASHBOARD_PASSWORD_FILE": str(secret), "DASHBOARD_PORT": str(port)})
    try:
        deadline = time.monotonic() + 60
        while True:
            try:
                request = urllib.request.Request(f"http://127.0.0.1:{port}/", headers=_basic("admin", PASSWORD))
                assert urllib.request.urlopen(request, timeout=5).status == 200
                break
            except (urllib.error.URLError, ConnectionError):
                assert proc.poll() is None, proc.communicate()[1][-2000:]
                assert time.monotonic() < deadline, "the dashboard did not start"
                time.sleep(0.2)
        with pytest.raises(urllib.error.HTTPError) as refused:
            urllib.request.urlopen(f"http://127.0.0.1:{port}/", timeout=5)
        assert refused.value.code == 401
        # nothing in the process table gives the password away (gunicorn may fork a worker)
        pids = [proc.pid] + [int(p) for p in subprocess.run(["pgrep", "-P", str(proc.pid)], capture_output=True,
                                                             text=True).stdout.split()]
        for pid in pids:
            assert PASSWORD not in Path(f"/proc/{pid}/cmdline").read_bytes().decode(errors="replace")
    finally:
        proc.terminate()
        proc.communicate(timeout=30)
