"""fs_conf/ loads on a real FreeSWITCH 1.11.1: modules, gateway, event socket, CDR and media settings."""

from __future__ import annotations

import re
import socket

import pytest

from dialer.esl_wire import EslProtocolError, read_message
from simulator.control import esl_api
from tests.realswitch.conftest import Rig

pytestmark = pytest.mark.timeout(120)

NEEDED = ("mod_console", "mod_logfile", "mod_event_socket", "mod_sofia", "mod_commands", "mod_dptools",
          "mod_dialplan_xml", "mod_sndfile", "mod_json_cdr")


def test_every_module_of_fs_conf_loads_and_nothing_else(rig: Rig) -> None:
    for module in NEEDED:
        assert rig.switch.api(f"module_exists {module}").strip() == "true", module
    for module in ("mod_spandsp", "mod_native_file", "mod_tone_stream", "mod_loopback"):
        assert rig.switch.api(f"module_exists {module}").strip() == "false", module
    log = rig.switch.log.read_text(errors="replace")
    startup = log[: log.index("FreeSWITCH Started")]  # later lines belong to the calls of other tests
    assert "Error Loading module" not in startup
    assert "[CRIT]" not in startup and "[ERR]" not in startup
    assert "deprecated" not in log  # no rtp-timeout-sec left in the profile


def test_gateway_points_at_the_carrier_and_the_profile_uses_a_timer(rig: Rig) -> None:
    status = rig.switch.api("sofia status")
    port = rig.switch.ports["external"]
    assert re.search(rf"(?m)^\s*external\s+profile\s+sip:mod_sofia@127\.0\.0\.1:{port}\s+RUNNING", status), status
    gateway = rig.switch.api("sofia status gateway carrier")
    assert re.search(rf"(?m)^Proxy\s+sip:127\.0\.0\.1:{rig.carrier.ports['carrier']}$", gateway), gateway
    assert re.search(r"(?m)^Status\s+UP$", gateway), gateway
    assert re.search(r"(?m)^State\s+NOREG$", gateway), gateway  # register=false
    profile = rig.switch.api("sofia status profile external")
    assert re.search(r"(?m)^CODECS OUT\s+PCMA,PCMU$", profile), profile
    assert re.search(r"(?m)^Context\s+public$", profile), profile


def test_switch_globals_from_vars_xml(rig: Rig) -> None:
    assert rig.switch.api("global_getvar cdr_dir").strip() == str(rig.cdr_dir)
    assert rig.switch.api("global_getvar media_timeout").strip() == "30000"
    assert rig.switch.api("global_getvar media_hold_timeout").strip() == "60000"
    assert rig.switch.api("global_getvar esl_password").strip() == rig.switch.password


def test_event_socket_wants_the_password(rig: Rig) -> None:
    with pytest.raises(EslProtocolError, match="authentication refused"):
        esl_api(rig.switch.esl_port, "status", password="ClueCon")
    assert esl_api(rig.switch.esl_port, "status", password=rig.switch.password).startswith("UP")


def test_event_socket_refuses_addresses_outside_the_acl(rig: Rig) -> None:
    """The ACL ``dialer`` allows 127.0.0.1/32 only: a client from 127.0.0.2 is turned away
    before it may even authenticate."""
    with socket.socket() as sock:
        sock.settimeout(5)
        sock.bind(("127.0.0.2", 0))
        sock.connect(("127.0.0.1", rig.switch.esl_port))
        stream = sock.makefile("rb")
        got = read_message(stream)
        assert got is not None
        headers, body = got
        assert headers.get("Content-Type") == "text/rude-rejection", headers
        assert b"Access Denied" in body
        notice = read_message(stream)
        assert notice is not None and notice[0].get("Content-Type") == "text/disconnect-notice"
        assert read_message(stream) is None  # and the switch closes the connection


def test_inbound_calls_are_refused(rig: Rig) -> None:
    """A call from the carrier side into our profile is challenged / rejected, never routed."""
    reply = rig.carrier.api(
        f"originate {{originate_timeout=5}}sofia/outbound/123@127.0.0.1:{rig.switch.ports['external']} &park()",
        timeout=20)
    assert reply.startswith("-ERR"), reply
