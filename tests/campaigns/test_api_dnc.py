"""/api/v1/dnc: the account's do-not-call list, and its effect on a campaign import."""

from __future__ import annotations

import io
from typing import Any

from tests.api.conftest import assert_error
from tests.campaigns.test_api_campaigns import calls_of, campaign_api, read_csv  # noqa: F401 - fixture


def add(client: Any, tenant: Any, phone: str, **body: Any) -> Any:
    return client.post("/api/v1/dnc", headers=tenant.headers, json={"phone_number": phone, **body})


def listed(client: Any, tenant: Any, query: str = "") -> list[str]:
    response = client.get(f"/api/v1/dnc{query}", headers=tenant.headers)
    assert response.status_code == 200, response.get_json()
    return [row["phone_number"] for row in response.get_json()["data"]]


def test_add_in_any_form_then_repeat(client: Any, tenant: Any) -> None:
    first = add(client, tenant, "0300-1234567", reason="asked on the phone")
    assert first.status_code == 201
    body = first.get_json()
    assert (body["phone_number"], body["reason"]) == ("+923001234567", "asked on the phone")
    assert body["created_at"]
    for form in ("+92 300 1234567", "923001234567", "00923001234567", "3001234567"):
        again = add(client, tenant, form)
        assert again.status_code == 200, form
        assert again.get_json()["phone_number"] == "+923001234567"
        assert again.get_json()["reason"] == "asked on the phone"  # the first entry is kept
    assert listed(client, tenant) == ["+923001234567"]
    error = assert_error(add(client, tenant, "12345"), 422, "VALIDATION_ERROR")
    assert "phone_number" in error["details"]
    assert_error(client.post("/api/v1/dnc", headers=tenant.headers, json={}), 422)


def test_list_filter_pages_and_isolation(client: Any, make_tenant: Any) -> None:
    owner, other = make_tenant(), make_tenant()
    for n in range(1, 4):
        assert add(client, owner, f"0300111000{n}").status_code == 201
    assert listed(client, owner) == ["+923001110003", "+923001110002", "+923001110001"]  # newest first
    page = client.get("/api/v1/dnc?per_page=2&page=2", headers=owner.headers).get_json()
    assert [r["phone_number"] for r in page["data"]] == ["+923001110001"]
    assert page["pagination"]["total"] == 3
    assert listed(client, owner, "?phone_number=0300-1110002") == ["+923001110002"]
    assert listed(client, other) == []
    # the other account's list is its own: the same number is new there
    assert add(client, other, "03001110001").status_code == 201
    assert_error(client.delete("/api/v1/dnc/+923001110002", headers=other.headers), 404, "NOT_FOUND")


def test_remove(client: Any, tenant: Any) -> None:
    add(client, tenant, "03001234567")
    response = client.delete("/api/v1/dnc/03001234567", headers=tenant.headers)
    assert response.status_code == 204
    assert listed(client, tenant) == []
    assert_error(client.delete("/api/v1/dnc/03001234567", headers=tenant.headers), 404, "NOT_FOUND")
    assert_error(client.delete("/api/v1/dnc/not-a-number", headers=tenant.headers), 422)


def test_bulk_upload_reports_invalid_rows(client: Any, tenant: Any, dnc_bulk: Any) -> None:
    add(client, tenant, "03009999999")
    data = (b"Name,Mobile\r\n"
            b"Ali,0300-1110001\r\n"     # 2
            b"Sara,hello\r\n"           # 3 invalid
            b"Dup,+923001110001\r\n"    # 4 the same number again
            b"Old,03009999999\r\n"      # 5 already listed
            b"Sci,9.23001E+11\r\n"      # 6 invalid
            b"Umar,03001110002\r\n")    # 7
    response = dnc_bulk.post(tenant, data)
    assert response.status_code == 202, response.get_json()
    accepted = response.get_json()
    assert (accepted["status"], accepted["filename"], accepted["size_bytes"]) == ("QUEUED", "dnc.csv", len(data))
    assert response.headers["Location"] == f"/api/v1/dnc/imports/{accepted['id']}"
    assert sorted(listed(client, tenant)) == ["+923009999999"]  # nothing parsed in the request

    body = dnc_bulk.run(tenant, accepted["id"])
    assert (body["status"], body["progress_percent"], body["error"]) == ("COMPLETED", 100, None)
    assert (body["rows"], body["added"], body["already_listed"], body["invalid"]) == (6, 2, 2, 2)
    assert [(r["line"], r["value"]) for r in body["invalid_rows"]] == [(3, "hello"), (6, "9.23001E+11")]
    assert all(r["reason"] for r in body["invalid_rows"])
    assert sorted(listed(client, tenant)) == ["+923001110001", "+923001110002", "+923009999999"]
    page = client.get("/api/v1/dnc/imports", headers=tenant.headers).get_json()
    assert [item["id"] for item in page["data"]] == [accepted["id"]] and page["pagination"]["total"] == 1
    assert not dnc_bulk.upload_file(accepted["id"]).exists()  # the numbers are in SQL; the file is gone


def test_bulk_upload_refuses_bad_files(client: Any, tenant: Any) -> None:
    for data, code in ((b"", "EMPTY_FILE"), (b"\x89PNG\r\n\x1a\n\x00\x00", "BINARY_FILE"),
                       (b"phone\n03001234567\n\xff\xfe\xfa03007654321\n", "INVALID_ENCODING")):
        response = client.post("/api/v1/dnc/bulk", headers=tenant.headers, content_type="multipart/form-data",
                               data={"csv_file": (io.BytesIO(data), "dnc.csv")})
        assert_error(response, 422, code)
    assert listed(client, tenant) == []


def test_number_on_the_list_before_import_is_not_imported(campaign_api: Any, client: Any, tenant: Any,  # noqa: F811
                                                          sessions: Any) -> None:
    add(client, tenant, "+92 300 1110002")
    data = b"phone\n03001110001\n0300-1110002\n03001110003\n"
    got = campaign_api.imported(tenant, data)
    summary = got["import_summary"]
    assert (summary["rows"], summary["accepted"], summary["do_not_call"], summary["invalid"]) == (3, 2, 1, 0)
    assert [c.phone_number for c in calls_of(sessions, got["id"])] == ["+923001110001", "+923001110003"]
    rejected = read_csv(client.get(f"/api/v1/campaigns/{got['id']}/rejected.csv", headers=tenant.headers))
    # the number as normalised, quoted so that a spreadsheet reads "+..." as text
    assert rejected[1:] == [["3", "'+923001110002", "on the do-not-call list"]]
