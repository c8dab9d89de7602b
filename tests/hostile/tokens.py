"""Tampered, expired and foreign JWTs (shared by the tests and ``bench/hostile.py``).

Every token here must answer 401 in the error envelope on a protected route.
"""

from __future__ import annotations

import base64
import json
import random
from datetime import UTC, datetime, timedelta
from typing import Any

import jwt


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def _unsigned(header: dict[str, Any], claims: dict[str, Any], signature: str = "") -> str:
    return f"{_b64(json.dumps(header).encode())}.{_b64(json.dumps(claims).encode())}.{signature}"


def tampered_tokens(access: str, refresh: str, secret: str, other_account: str, other_user: str,
                    rng: random.Random, garbage: int) -> list[tuple[str, str]]:
    """(label, token) pairs; ``access``/``refresh`` are genuine tokens of one user.

    (A token signed with the real key but without a ``type`` claim is read as an access token by
    flask-jwt-extended; only the key's holder can make one, so it is not among these cases.)
    """
    header_b64, claims_b64, signature = access.split(".")
    claims = json.loads(base64.urlsafe_b64decode(claims_b64 + "=" * (-len(claims_b64) % 4)))
    now = datetime.now(UTC)
    out = [
        ("alg none", _unsigned({"alg": "none", "typ": "JWT"}, claims)),
        ("alg None with the old signature", _unsigned({"alg": "None", "typ": "JWT"}, claims, signature)),
        ("alg HS512 signed with the key", jwt.encode(claims, secret, algorithm="HS512")),
        ("flipped signature", f"{header_b64}.{claims_b64}.{signature[::-1]}"),
        ("signature of another key", jwt.encode(claims, "x" * 40, algorithm="HS256")),
        ("no signature", f"{header_b64}.{claims_b64}."),
        ("changed sub, old signature", f"{header_b64}.{_b64(json.dumps({**claims, 'sub': other_user}).encode())}"
                                       f".{signature}"),
        ("changed acc, old signature", f"{header_b64}.{_b64(json.dumps({**claims, 'acc': other_account}).encode())}"
                                       f".{signature}"),
        ("expired", jwt.encode({**claims, "exp": int((now - timedelta(minutes=1)).timestamp())}, secret,
                               algorithm="HS256")),
        ("not yet valid", jwt.encode({**claims, "nbf": int((now + timedelta(hours=1)).timestamp())}, secret,
                                     algorithm="HS256")),
        ("refresh token as access", refresh),
        ("type changed", jwt.encode({**claims, "type": "admin"}, secret, algorithm="HS256")),
        ("sub of a missing user", jwt.encode({**claims, "sub": "0" * 36}, secret, algorithm="HS256")),
        ("sub not a string", jwt.encode({**claims, "sub": 12345}, secret, algorithm="HS256")),
        ("sub missing", jwt.encode({k: v for k, v in claims.items() if k != "sub"}, secret, algorithm="HS256")),
        ("header not JSON", f"{_b64(b'{nope')}.{claims_b64}.{signature}"),
        ("claims not JSON", f"{header_b64}.{_b64(b'[1,2')}.{signature}"),
        ("two segments", f"{header_b64}.{claims_b64}"),
        ("four segments", f"{access}.{signature}"),
        ("empty", ""),
        ("dots", ".."),
        ("an API key shape with a wrong key", "zc_live_" + "A" * 40),
        ("an API key prefix only", "zc_live_"),
        ("very long", "a" * 8000),
        ("non-ASCII", "é" * 50),
    ]
    alphabet = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_.="
    for _ in range(garbage):
        size = rng.choice([1, 10, 100, 300])
        out.append((f"garbage {size}", "".join(rng.choice(alphabet) for _ in range(size))))
    for _ in range(garbage):  # one flipped character of the genuine token
        pos = rng.randrange(len(header_b64) + 1, len(access))
        if access[pos] == ".":
            continue
        flipped = access[:pos] + ("A" if access[pos] != "A" else "B") + access[pos + 1:]
        out.append((f"one character changed at {pos}", flipped))
    return out


def check_tokens(client: Any, tokens: list[tuple[str, str]]) -> tuple[int, list[str]]:
    from tests.hostile.uploads import envelope_problem

    failures = []
    for label, token in tokens:
        response = client.get("/api/v1/balance", headers={"Authorization": f"Bearer {token}"})
        problem = envelope_problem(response)
        if response.status_code != 401:
            problem = f"status {response.status_code}"
        if problem is not None:
            failures.append(f"{label}: {problem}")
    return len(tokens), failures
