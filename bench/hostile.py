"""Hostile input, a longer bounded run of what ``tests/hostile`` checks in CI.

Usage: ``python bench/hostile.py [--examples 100] [--uploads 200] [--tokens 200] [--seed N]
[--db-server mysql+pymysql://root@127.0.0.1:3306] [--redis-url redis://127.0.0.1:6379/12]``

Creates a throw-away database ``zc_bench_<random>`` (migrated, dropped at the end), builds the
real app in-process with the rate limits raised, and runs:

* schema fuzzing: ``--examples`` generated requests per operation of ``/api/v1/openapi.json``
  (schemathesis, random seed), with a real API key: no 5xx, documented status, content type
  and body;
* hostile audio uploads and hostile CSV uploads (random bytes, truncated files, absurd
  headers, decompression bombs, traversal file names): a clear 4xx envelope, nothing written;
* the tenant-isolation matrix over every id-taking route of the url_map;
* tampered, expired and garbage JWTs: 401 envelope;
* brute-force login from one address: 429 after the configured count.

Prints cases tried and failures per family, every distinct failure, and PASS/FAIL; exit status 1
on any failure.
"""

from __future__ import annotations

import argparse
import os
import random
import secrets
import shutil
import sys
import tempfile
import time
import uuid
from dataclasses import replace
from decimal import Decimal
from pathlib import Path
from typing import Any

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

import sqlalchemy as sa  # noqa: E402
from alembic import command  # noqa: E402

from api.cli import alembic_config  # noqa: E402
from tests.conftest import Tenant  # noqa: E402
from tests.hostile import payloads  # noqa: E402
from tests.hostile.fuzzing import fuzz_api  # noqa: E402
from tests.hostile.isolation import run_matrix  # noqa: E402
from tests.hostile.tokens import check_tokens, tampered_tokens  # noqa: E402
from tests.hostile.uploads import (  # noqa: E402
    check_uploads,
    csv_sender,
    envelope_problem,
    recording_payloads,
    send_audio,
)

HIGH = "1000000 per minute"
LOGIN_LIMIT = 5


def new_tenant(app: Any, settings: Any) -> Tenant:
    from services.accounts import create_account

    email = f"hostile-{uuid.uuid4().hex[:12]}@example.pk"
    with app.extensions["zenscall"].sessions() as session:
        created = create_account(session, settings, name="Hostile Co", email=email, password="S3cret!pass",
                                 balance=Decimal("1000"))
        return Tenant(created.account.id, created.user.id, email, "S3cret!pass", created.api_key,
                      created.api_key_id)


def brute_force(settings: Any, tenant: Tenant, attempts: int) -> tuple[int, list[str]]:
    from api import create_app

    app = create_app(replace(settings, ratelimit_login=f"{LOGIN_LIMIT} per minute"))
    client = app.test_client()
    here = {"REMOTE_ADDR": f"10.250.{random.randrange(250)}.{random.randrange(1, 250)}"}
    failures = []
    for n in range(attempts):
        response = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": f"guess-{n}"},
                               environ_base=here)
        expected = 401 if n < LOGIN_LIMIT else 429
        if response.status_code != expected or envelope_problem(response) is not None:
            failures.append(f"login attempt {n + 1}: status {response.status_code}, expected {expected}")
    app.extensions["zenscall"].engine.dispose()
    return attempts, failures


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=100, help="generated requests per API operation")
    parser.add_argument("--uploads", type=int, default=200, help="random and truncated files per family")
    parser.add_argument("--tokens", type=int, default=200, help="garbage and one-character-changed JWTs")
    parser.add_argument("--seed", type=int, default=int(time.time()))
    parser.add_argument("--db-server", default=os.environ.get("ZC_BENCH_DB_SERVER",
                                                              "mysql+pymysql://root@127.0.0.1:3306"))
    parser.add_argument("--redis-url", default=os.environ.get("ZC_BENCH_REDIS_URL", "redis://127.0.0.1:6379/12"))
    args = parser.parse_args(argv)

    name = f"zc_bench_{secrets.token_hex(4)}"
    server = sa.create_engine(args.db_server, isolation_level="AUTOCOMMIT")
    with server.connect() as conn:
        conn.exec_driver_sql(f"CREATE DATABASE {name} CHARACTER SET utf8mb4 COLLATE utf8mb4_unicode_ci")
    url = f"{args.db_server}/{name}?charset=utf8mb4"
    var_dir = Path(tempfile.mkdtemp(prefix="zc-bench-hostile-"))
    os.environ["VAR_DIR"] = str(var_dir)
    results: list[tuple[str, int, list[str], float]] = []
    try:
        command.upgrade(alembic_config(url), "head")
        from api import create_app
        from core.settings import load_settings

        settings = replace(load_settings(), database_url=url, redis_url=args.redis_url,
                           audio_dir=var_dir / "audio", fs_audio_dir=str(var_dir / "audio"),
                           dialer_queue=f"hostile-{secrets.token_hex(3)}", ratelimit_default=HIGH,
                           ratelimit_create=HIGH, ratelimit_login=HIGH, ratelimit_upload=HIGH)
        app = create_app(settings)
        app.config["TESTING"] = True
        client = app.test_client()
        rng = random.Random(args.seed)

        def timed(label: str, run: Any) -> None:
            started = time.monotonic()
            tried, failures = run()
            results.append((label, tried, failures, time.monotonic() - started))
            print(f"  {label}: {tried} cases, {len(failures)} failures", flush=True)

        print(f"hostile input run, seed {args.seed}", flush=True)

        def schema_fuzz() -> tuple[int, list[str]]:
            report = fuzz_api(app, new_tenant(app, settings).api_key, examples=args.examples, derandomize=False)
            return report.cases, list(report.failures.values())

        timed("schema fuzzing (schemathesis)", schema_fuzz)
        timed("audio uploads", lambda: check_uploads(app, client, new_tenant(app, settings),
                                                     payloads.audio_payloads(rng, args.uploads), send_audio,
                                                     payloads.MAY_DECODE))

        def recordings() -> tuple[int, list[str]]:
            cases, may_decode = recording_payloads(rng, args.uploads)
            return check_uploads(app, client, new_tenant(app, settings), cases, send_audio, may_decode)

        timed("damaged recordings and playlists", recordings)

        def csv_uploads() -> tuple[int, list[str]]:
            tenant = new_tenant(app, settings)
            audio = send_audio(client, tenant, "m.wav", payloads.good_wav()).get_json()
            return check_uploads(app, client, tenant, payloads.csv_payloads(rng, args.uploads),
                                 csv_sender(audio["id"]))

        timed("CSV uploads", csv_uploads)
        timed("tenant isolation matrix", lambda: run_matrix(app, client, new_tenant(app, settings),
                                                            new_tenant(app, settings)))

        def tokens() -> tuple[int, list[str]]:
            tenant, other = new_tenant(app, settings), new_tenant(app, settings)
            issued = client.post("/api/v1/auth/login", json={"email": tenant.email, "password": tenant.password},
                                 environ_base={"REMOTE_ADDR": "10.251.0.1"}).get_json()
            return check_tokens(client, tampered_tokens(issued["access_token"], issued["refresh_token"],
                                                        app.config["JWT_SECRET_KEY"], other.account_id,
                                                        other.user_id, rng, args.tokens))

        timed("JWT tampering", tokens)
        timed("brute-force login", lambda: brute_force(settings, new_tenant(app, settings), LOGIN_LIMIT + 10))
        app.extensions["zenscall"].engine.dispose()
    finally:
        with server.connect() as conn:
            conn.exec_driver_sql(f"DROP DATABASE IF EXISTS {name}")
        server.dispose()
        shutil.rmtree(var_dir, ignore_errors=True)

    print(f"\n{'family':34} {'cases':>7} {'failures':>9} {'seconds':>8}")
    for label, tried, failures, seconds in results:
        print(f"{label:34} {tried:7d} {len(failures):9d} {seconds:8.1f}")
    total = sum(r[1] for r in results)
    failed = sum(len(r[2]) for r in results)
    print(f"{'total':34} {total:7d} {failed:9d}")
    for label, _tried, failures, _seconds in results:
        for failure in failures:
            print(f"\nFAIL {label}: {failure[:2000]}")
    print(f"\nhostile input: {'PASS' if not failed else 'FAIL'}")
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())
