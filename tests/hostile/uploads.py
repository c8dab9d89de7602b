"""Send hostile uploads and check each answer: a clear 4xx error envelope, nothing written.

Shared by the tests and ``bench/hostile.py``. "Nothing written" means: no new file anywhere under
the var directory (audio, uploads, temporary files), no new row in any table of the account.
"""

from __future__ import annotations

import io
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import sqlalchemy as sa


def tree(root: Path) -> set[str]:
    found = set()
    for folder, _dirs, files in os.walk(root):
        found.update(os.path.join(folder, name) for name in files)
    return found


def row_counts(app: Any, account_id: str) -> dict[str, int]:
    """Rows an account owns in every table that has an ``account_id`` column."""
    counts = {}
    with app.extensions["zenscall"].engine.connect() as conn:
        inspector = sa.inspect(conn)
        for name in sorted(inspector.get_table_names()):
            if "account_id" in {c["name"] for c in inspector.get_columns(name)}:
                counts[name] = conn.execute(
                    sa.text(f"SELECT COUNT(*) FROM {name} WHERE account_id = :a"), {"a": account_id}).scalar_one()
    return counts


def envelope_problem(response: Any) -> str | None:
    """Why a response is not a clear 4xx error envelope, or None."""
    if not 400 <= response.status_code < 500:
        return f"status {response.status_code}"
    if response.mimetype != "application/json":
        return f"content type {response.mimetype}"
    body = response.get_json(silent=True)
    if not isinstance(body, dict) or set(body) != {"error"} or not isinstance(body["error"], dict):
        return f"body {response.get_data(as_text=True)[:200]!r}"
    error = body["error"]
    if set(error) != {"code", "message", "details"} or not error["code"] or not error["message"]:
        return f"envelope {error!r}"
    return None


def check_uploads(app: Any, client: Any, tenant: Any, payloads: list[tuple[str, str, bytes]],
                  send: Callable[[Any, Any, str, bytes], Any],
                  may_decode: frozenset[str] | set[str] = frozenset()) -> tuple[int, list[str]]:
    """Send every payload; (cases tried, failures). ``send(client, tenant, name, data)`` posts one.

    Labels in ``may_decode`` are odd but decodable audio: a 201 is allowed for them when the
    message stays within the duration limit and only its own ``<id>.wav`` was written.
    """
    settings = app.extensions["zenscall"].settings
    var_dir = Path(settings.var_dir)
    failures = []
    for label, name, data in payloads:
        files_before, rows_before = tree(var_dir), row_counts(app, tenant.account_id)
        response = send(client, tenant, name, data)
        if label in may_decode and response.status_code == 201:
            body = response.get_json()
            own = {str(app.extensions["zenscall"].audio.path_for(body["id"]))}
            if body["duration_ms"] > settings.max_audio_seconds * 1000 or tree(var_dir) - files_before != own:
                failures.append(f"{label}: accepted beyond limits {body}")
            client.delete(f"/api/v1/audio/{body['id']}", headers=tenant.headers)
            continue
        problem = envelope_problem(response)
        if problem is None and (new := tree(var_dir) - files_before):
            problem = f"wrote {sorted(new)[:3]}"
        if problem is None and (rows := row_counts(app, tenant.account_id)) != rows_before:
            problem = f"rows changed {rows_before} -> {rows}"
        if problem is not None:
            failures.append(f"{label} ({name!r}): {problem}")
    return len(payloads), failures


BOUNDARY = "zc-hostile-boundary-7f3a"


def multipart(fields: dict[str, str], file_field: str, name: str, data: bytes) -> bytes:
    """A multipart body written by hand, so the file name reaches the server byte for byte
    (backslashes, NUL and control characters included; a client library would escape them)."""
    out = io.BytesIO()
    for key, value in fields.items():
        out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{key}"\r\n\r\n{value}\r\n'.encode())
    # a quoted name loses its backslashes (quoted-pair escapes): a name with one goes unquoted
    quote = "" if "\\" in name and not any(c in name for c in ' ;"') else '"'
    out.write(f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="{file_field}"; filename={quote}'.encode())
    out.write(name.replace('"', "%22").encode("utf-8", "surrogateescape"))
    out.write(f'{quote}\r\nContent-Type: application/octet-stream\r\n\r\n'.encode())
    out.write(data)
    out.write(f"\r\n--{BOUNDARY}--\r\n".encode())
    return out.getvalue()


def send_audio(client: Any, tenant: Any, name: str, data: bytes) -> Any:
    return client.post("/api/v1/audio", headers=tenant.headers, data=multipart({"name": "hostile"}, "file", name, data),
                       content_type=f"multipart/form-data; boundary={BOUNDARY}")


def send_dnc_list(client: Any, tenant: Any, name: str, data: bytes) -> Any:
    body = multipart({}, "csv_file", name, data)
    return client.post("/api/v1/dnc/bulk", headers=tenant.headers, data=body,
                       content_type=f"multipart/form-data; boundary={BOUNDARY}")


def csv_sender(audio_id: str) -> Callable[[Any, Any, str, bytes], Any]:
    def send(client: Any, tenant: Any, name: str, data: bytes) -> Any:
        body = multipart({"name": "hostile", "audio_id": audio_id}, "csv_file", name, data)
        return client.post("/api/v1/campaigns", headers=tenant.headers, data=body,
                           content_type=f"multipart/form-data; boundary={BOUNDARY}")

    return send


def recording_payloads(rng: Any, count: int) -> tuple[list[tuple[str, str, bytes]], set[str]]:
    """Phone and browser recordings (M4A, 3GP, AMR, WebM, Ogg Opus, ADTS) cut short, bit-flipped and
    with their headers overwritten, plus playlists and concat lists under audio names.

    Returns (payloads, labels that may decode): a damaged recording can still hold decodable audio,
    so those may be accepted (within the limits, writing only their own WAV) or refused; never a 5xx.
    """
    from tests.unit.audio_samples import sample

    out: list[tuple[str, str, bytes]] = []
    for kind, name in (("M4A/AAC", "memo.m4a"), ("3GP/AMR-NB", "rec.3gp"), ("AMR-NB", "rec.amr"),
                       ("AMR-WB", "rec.awb"), ("WebM/Opus", "rec.webm"), ("OGG/Opus", "rec.ogg"), ("AAC", "rec.aac")):
        good = sample(kind, 1.0)
        cuts = sorted({4, 8, 12, 16, 32, 64, len(good) // 2, len(good) - 1} | {rng.randrange(1, len(good))
                                                                            for _ in range(count // 4)})
        out += [(f"{kind} cut at {n}", name, good[:n]) for n in cuts if n < len(good)]
        for i in range(count // 2):
            flipped = bytearray(good)
            for _ in range(rng.choice([1, 8, 64])):
                flipped[rng.randrange(12, len(flipped))] ^= 1 << rng.randrange(8)
            out.append((f"{kind} bit flips #{i}", name, bytes(flipped)))
        out.append((f"{kind} header + random", name, good[:64] + rng.randbytes(len(good) - 64)))
    may_decode = {label for label, _, _ in out}
    playlist = b"#EXTM3U\n#EXTINF:10,\nfile:///etc/passwd\nhttp://127.0.0.1:1/x.ts\n"
    concat = b"ffconcat version 1.0\nfile '/etc/passwd'\nfile 'http://127.0.0.1:1/x'\n"
    out += [("HLS playlist", "message.m3u8", playlist), ("HLS playlist named .mp3", "message.mp3", playlist),
            ("concat list", "message.wav", concat),
            ("ID3 + playlist", "message.mp3", b"ID3\x04\0\0\0\0\0\0" + playlist),
            ("ftyp + playlist", "memo.m4a", b"\0\0\0\x14ftypM4A \0\0\0\0" + playlist)]
    return out, may_decode
