"""Hostile audio and CSV uploads: each answers a clear 4xx envelope and writes nothing."""

from __future__ import annotations

import io
import os
import random
from pathlib import Path

import pytest

from tests.hostile import payloads
from tests.hostile.uploads import check_uploads, csv_sender, recording_payloads, send_audio, send_dnc_list, tree

COUNT = int(os.environ.get("ZC_HOSTILE_UPLOADS", "20"))


def test_hostile_audio_is_refused_and_nothing_written(hostile_app, client, make_tenant):
    tenant = make_tenant()
    cases = payloads.audio_payloads(random.Random(6), COUNT)
    tried, failures = check_uploads(hostile_app, client, tenant, cases, send_audio, payloads.MAY_DECODE)
    assert tried == len(cases) > 80
    assert not failures, "\n".join(failures)


def test_damaged_recordings_and_playlists_are_refused_or_decoded_within_limits(hostile_app, client, make_tenant):
    tenant = make_tenant()
    cases, may_decode = recording_payloads(random.Random(8), COUNT)
    tried, failures = check_uploads(hostile_app, client, tenant, cases, send_audio, may_decode)
    assert tried == len(cases) > 100
    assert not failures, "\n".join(failures)


@pytest.mark.parametrize("name", ["/tmp/message.wav", "dir/message.wav", "message.wav"])
def test_client_paths_keep_only_the_base_name(hostile_app, client, make_tenant, name):
    tenant = make_tenant()
    var_dir = Path(hostile_app.extensions["zenscall"].settings.var_dir)
    before = tree(var_dir)
    response = send_audio(client, tenant, name, payloads.good_wav())
    assert response.status_code == 201, response.get_json()
    body = response.get_json()
    assert body["original_filename"] == "message.wav"
    audio_root = hostile_app.extensions["zenscall"].audio.root
    assert tree(var_dir) - before == {str(audio_root / f"{body['id']}.wav")}


def test_oversized_multipart_headers_are_refused(hostile_app, client, make_tenant):
    tenant = make_tenant()
    for name in ("x" * 100_000 + ".wav", "a.wav"):
        response = client.post(
            "/api/v1/audio", headers={**tenant.headers, "X-Padding": "p" * 200_000},
            content_type="multipart/form-data", data={"file": (io.BytesIO(payloads.good_wav()), name)})
        assert response.status_code in (201, 400, 413, 422, 431), response.status_code
        if response.status_code == 201:
            assert len(response.get_json()["original_filename"]) <= 255


@pytest.fixture()
def campaign_route(make_tenant):
    return make_tenant()


def test_hostile_csv_is_refused_and_nothing_written(hostile_app, client, campaign_route):
    tenant = campaign_route
    audio = send_audio(client, tenant, "message.wav", payloads.good_wav()).get_json()
    cases = [case for case in payloads.csv_payloads(random.Random(7), COUNT) if not case[0].startswith("traversal")]
    tried, failures = check_uploads(hostile_app, client, tenant, cases, csv_sender(audio["id"]))
    assert tried == len(cases) > 20
    assert not failures, "\n".join(failures)


def test_hostile_dnc_lists_are_refused_and_nothing_written(hostile_app, client, make_tenant):
    tenant = make_tenant()
    cases = list(payloads.csv_payloads(random.Random(8), COUNT))
    tried, failures = check_uploads(hostile_app, client, tenant, cases, send_dnc_list)
    assert tried == len(cases) > 20
    assert not failures, "\n".join(failures)


def test_csv_traversal_names_are_refused(hostile_app, client, campaign_route):
    tenant = campaign_route
    audio = send_audio(client, tenant, "message.wav", payloads.good_wav()).get_json()
    cases = [case for case in payloads.csv_payloads(random.Random(7), 0) if case[0].startswith("traversal")]
    tried, failures = check_uploads(hostile_app, client, tenant, cases, csv_sender(audio["id"]))
    assert not failures, "\n".join(failures)
