"""The tenant-isolation matrix, generated from the app's url_map (shared by the tests and
``bench/hostile.py``): every route with an id in its path, every method, asked by another tenant
with the victim's real id. Each must answer 404 in the error envelope and change nothing.

A new route whose id argument has no entry in ``VICTIM_IDS`` fails the matrix until one is added,
so new endpoints are covered the day they appear.
"""

from __future__ import annotations

import io
from typing import Any

from tests.hostile.payloads import good_wav
from tests.hostile.uploads import envelope_problem, row_counts

# route argument -> which of the victim's ids it takes
VICTIM_IDS = {"call_id": "call", "audio_id": "audio", "key_id": "key", "campaign_id": "campaign",
              "phone_number": "dnc_number", "import_id": "dnc_import", "webhook_id": "webhook",
              "delivery_id": "delivery"}
SKIP_METHODS = {"HEAD", "OPTIONS"}


def id_routes(app: Any) -> list[tuple[str, str, str]]:
    """(method, rule, argument) for every API route that takes an id in its path."""
    out = []
    for rule in app.url_map.iter_rules():
        if not rule.rule.startswith("/api/v1/") or not rule.arguments or "filename" in rule.arguments:
            continue
        for method in sorted((rule.methods or set()) - SKIP_METHODS):
            out.append((method, rule.rule, sorted(rule.arguments)[0]))
    return out


def make_victim(client: Any, tenant: Any) -> dict[str, str]:
    """One of everything a tenant can own, created through the API."""
    h = tenant.headers
    audio = client.post("/api/v1/audio", headers=h, content_type="multipart/form-data",
                        data={"file": (io.BytesIO(good_wav()), "m.wav")}).get_json()
    call = client.post("/api/v1/calls", headers=h, json={"phone_number": "03001234567", "audio_id": audio["id"]})
    key = client.post("/api/v1/api-keys", headers=h, json={"name": "second"}).get_json()
    ids = {"audio": audio["id"], "call": call.get_json()["id"], "key": key["id"], "dnc_number": "923001112233"}
    campaign = client.post("/api/v1/campaigns", headers=h, content_type="multipart/form-data",
                           data={"name": "victim", "audio_id": audio["id"],
                                 "csv_file": (io.BytesIO(b"phone\n03001234568\n"), "n.csv")})
    if campaign.status_code == 201:
        ids["campaign"] = campaign.get_json()["id"]
    client.post("/api/v1/dnc", headers=h, json={"phone_number": "03001112233"})
    dnc_import = client.post("/api/v1/dnc/bulk", headers=h, content_type="multipart/form-data",
                             data={"csv_file": (io.BytesIO(b"phone\n03001112244\n"), "dnc.csv")})
    if dnc_import.status_code == 202:
        ids["dnc_import"] = dnc_import.get_json()["id"]
    return ids


def make_webhook_victim(app: Any, tenant: Any) -> dict[str, str]:
    """A webhook endpoint and one delivery of it (written in SQL: no URL the hostile app would take
    resolves without a network)."""
    from core.db import utcnow
    from core.models import WebhookDelivery, WebhookEndpoint

    with app.extensions["zenscall"].sessions() as session:
        endpoint = WebhookEndpoint(account_id=tenant.account_id, url="https://hooks.example.com/x", events=["*"],
                                   enabled=True, secret="whsec_victim", created_at=utcnow(), updated_at=utcnow())
        session.add(endpoint)
        session.flush()
        delivery = WebhookDelivery(send_id="none", account_id=tenant.account_id, endpoint_id=endpoint.id,
                                   event_id="evt_victim", event_type="ping", url=endpoint.url, attempt_no=1,
                                   status="FAILED", latency_ms=1, created_at=utcnow())
        session.add(delivery)
        session.commit()
        return {"webhook": endpoint.id, "delivery": delivery.id}


def state(app: Any, client: Any, tenant: Any, ids: dict[str, str]) -> Any:
    """What the victim sees of its own things, plus its row counts."""
    h = tenant.headers
    seen = [row_counts(app, tenant.account_id), client.get("/api/v1/balance", headers=h).get_json()]
    for path in (f"/api/v1/calls/{ids['call']}", f"/api/v1/audio/{ids['audio']}", f"/api/v1/api-keys/{ids['key']}",
                 "/api/v1/dnc"):
        body = client.get(path, headers=h).get_json()
        if isinstance(body, dict):
            body.pop("last_used_at", None)
        seen.append(body)
    if "webhook" in ids:
        seen.append(client.get(f"/api/v1/webhooks/{ids['webhook']}", headers=h).get_json())
        seen.append(client.get(f"/api/v1/webhooks/{ids['webhook']}/deliveries", headers=h).get_json())
    if "campaign" in ids:
        body = client.get(f"/api/v1/campaigns/{ids['campaign']}", headers=h).get_json()
        seen.append({k: body.get(k) for k in ("status", "pause_reason", "name")})
    return seen


def run_matrix(app: Any, client: Any, victim: Any, attacker: Any) -> tuple[int, list[str]]:
    """(cases tried, failures) of the whole matrix."""
    ids = {**make_victim(client, victim), **make_webhook_victim(app, victim)}
    failures = []
    tried = 0
    for method, rule, argument in id_routes(app):
        kind = VICTIM_IDS.get(argument)
        if kind is None:
            failures.append(f"{method} {rule}: no victim id for <{argument}>; add it to VICTIM_IDS")
            continue
        if kind not in ids:
            failures.append(f"{method} {rule}: the victim could not create a {kind}")
            continue
        path = rule.replace(f"<{argument}>", ids[kind])
        for converter in ("string", "path", "int", "uuid"):
            path = path.replace(f"<{converter}:{argument}>", ids[kind])
        before = state(app, client, victim, ids)
        response = client.open(path, method=method, headers=attacker.headers)
        tried += 1
        problem = envelope_problem(response)
        if response.status_code != 404:
            problem = f"status {response.status_code}"
        if problem is None and state(app, client, victim, ids) != before:
            problem = "the victim's data changed"
        if problem is not None:
            failures.append(f"{method} {path} ({rule}): {problem}")
    return tried, failures
