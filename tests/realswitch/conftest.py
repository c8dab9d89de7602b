"""The real-switch suite: a real FreeSWITCH 1.11.1 running the project's fs_conf/.

Run with ``make test-fs`` (sets ``ZC_REALSWITCH=1``); ``make test`` does not collect it, so the
README's test command needs no FreeSWITCH. With ``ZC_REALSWITCH=1`` a missing FreeSWITCH is a
failure, never a skip. Nothing is installed here: the prebuilt package must be in ``FS_HOME``
(default /opt/freeswitch; its ``install.sh`` puts it there, ``.ci/run`` calls it).

One session starts two instances on free ports in a temporary directory (``rig.py``): the
package's own configuration as the carrier (answers by the number's last digit) and the
project's ``fs_conf/`` as is, configured only through its environment variables, its gateway
``carrier`` pointed at the carrier. The tests talk to it with the dialer's own ESL adapter.
"""

from __future__ import annotations

import os
import secrets
import shutil
import tempfile
import wave
from collections.abc import Iterator
from dataclasses import dataclass
from pathlib import Path

import pytest

from dialer.esl import EslClient
from tests.esl.conftest import Collector
from tests.realswitch.rig import FreeSwitchMissing, Instance, carrier_switch, fs_home, zenscall_switch

ENABLED = os.environ.get("ZC_REALSWITCH") == "1"
collect_ignore_glob = [] if ENABLED else ["test_*.py"]


@dataclass
class Rig:
    carrier: Instance
    switch: Instance  # fs_conf/
    cdr_dir: Path
    audio_dir: Path

    def message(self, seconds: int) -> str:
        """An 8 kHz mono 16-bit WAV of ``seconds`` (a tone, so it is not silence)."""
        path = self.audio_dir / f"message-{seconds}s.wav"
        if not path.exists():
            frame = (1000).to_bytes(2, "little", signed=True) + (-1000).to_bytes(2, "little", signed=True)
            with wave.open(str(path), "wb") as w:
                w.setnchannels(1)
                w.setsampwidth(2)
                w.setframerate(8000)
                w.writeframes(frame * 4000 * seconds)
        return str(path)


@pytest.fixture(scope="session")
def rig() -> Iterator[Rig]:
    try:
        fs_home()
    except FreeSwitchMissing as exc:
        pytest.fail(str(exc), pytrace=False)
    base = Path(tempfile.mkdtemp(prefix="zc-realswitch-"))
    carrier = carrier_switch(base / "carrier").start()
    switch: Instance | None = None
    try:
        switch = zenscall_switch(base / "zenscall", carrier, cdr_dir=base / "cdr",
                                 password="rs-" + secrets.token_hex(12)).start()
        audio = base / "audio"
        audio.mkdir()
        yield Rig(carrier, switch, base / "cdr", audio)
    finally:
        if switch is not None:
            switch.stop()
        carrier.stop()
        shutil.rmtree(base, ignore_errors=True)


@pytest.fixture
def esl(rig: Rig) -> Iterator[tuple[EslClient, Collector]]:
    """The dialer's ESL adapter connected to the fs_conf switch (events + commands)."""
    collector = Collector()
    client = EslClient("127.0.0.1", rig.switch.esl_port, rig.switch.password, on_event=collector,
                       command_timeout=10)
    client.connect()
    try:
        yield client, collector
    finally:
        client.close()
