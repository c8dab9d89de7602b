"""Real FreeSWITCH instances for the real-switch suite, the fixture recorder and the benchmark.

Nothing is installed here: the prebuilt FreeSWITCH 1.11.1 must already be in ``FS_HOME``
(default ``/opt/freeswitch``; the package's ``install.sh`` puts it there). Every instance runs
from its own run directory (``conf/``, ``log/``, ``run/``, ``db/`` ...) on free ports, like the
package's ``start.sh``, so instances of parallel runs do not meet:

* :func:`carrier_switch`: the package's own configuration (``$FS_HOME/etc/freeswitch``): a
  profile ``carrier`` that answers by the dialed number's last digit (2 busy, 3 rings, 6
  answers and stays 120 s, 0 answers and parks, i.e. sends no media, ...) and a profile
  ``outbound`` with a gateway ``carrier`` pointing at it (both legs on one switch);
* :func:`zenscall_switch`: the project's ``fs_conf/`` as shipped, configured only through the
  environment variables ``fs_conf/vars.xml`` reads (ESL port and password, SIP port, bind
  address, RTP range, CDR directory, the carrier's address: the carrier switch's profile).
"""

from __future__ import annotations

import os
import random
import re
import shutil
import signal
import socket
import subprocess
import time
from dataclasses import dataclass, field
from pathlib import Path

from simulator.control import esl_api

ROOT = Path(__file__).resolve().parents[2]
FS_CONF = ROOT / "fs_conf"
#: RTP windows are picked below Linux's ephemeral range and outside the package's default
#: 16384-32768, so parallel runs and other switches on the machine rarely share ports.
_RTP_LOW, _RTP_HIGH = 10000, 16000


class FreeSwitchMissing(RuntimeError):
    """No FreeSWITCH binary in FS_HOME."""


def fs_home() -> Path:
    """``$FS_HOME`` (default /opt/freeswitch) with an executable ``bin/freeswitch``."""
    home = Path(os.environ.get("FS_HOME", "/opt/freeswitch"))
    if not os.access(home / "bin" / "freeswitch", os.X_OK):
        raise FreeSwitchMissing(
            f"no FreeSWITCH in {home} (bin/freeswitch): install the prebuilt package with its "
            "install.sh (as root) or point FS_HOME at an extracted copy")
    return home


def _port_free(port: int) -> bool:
    for kind in (socket.SOCK_STREAM, socket.SOCK_DGRAM):
        with socket.socket(socket.AF_INET, kind) as s:
            try:
                s.bind(("127.0.0.1", port))
            except OSError:
                return False
    return True


def free_port(taken: set[int] | None = None, span: int = 1) -> int:
    """A port P such that P .. P+span-1 are free for TCP and UDP on 127.0.0.1."""
    taken = taken if taken is not None else set()
    rng = random.Random()
    for _ in range(500):
        port = rng.randrange(20000, 30000)
        ports = set(range(port, port + span))
        if ports & taken:
            continue
        if all(_port_free(p) for p in ports):
            taken.update(ports)
            return port
    raise RuntimeError("no free port found")


def rtp_window(size: int = 400) -> tuple[int, int]:
    start = random.Random().randrange(_RTP_LOW, _RTP_HIGH - size) // 2 * 2
    return start, start + size - 1


@dataclass
class Instance:
    """One FreeSWITCH process started from ``run_dir`` (this process started it; it stops it)."""

    name: str
    run_dir: Path
    esl_port: int
    password: str
    env: dict[str, str] = field(default_factory=dict)  # the FreeSWITCH process's environment
    ports: dict[str, int] = field(default_factory=dict)  # its SIP ports by profile
    ready_checks: tuple[tuple[str, str], ...] = ()  # (api command, regex its answer must match)
    pid: int | None = None

    @property
    def log(self) -> Path:
        return self.run_dir / "log" / "freeswitch.log"

    def api(self, command: str, timeout: float = 10.0) -> str:
        return esl_api(self.esl_port, command, password=self.password, timeout=timeout)

    def start(self, timeout: float = 60.0) -> Instance:
        home = fs_home()
        run = self.run_dir
        for sub in ("log", "run", "db", "temp", "storage", "cache", "recordings", "certs"):
            (run / sub).mkdir(parents=True, exist_ok=True)
        args = [str(home / "bin" / "freeswitch"), "-nonat", "-nc", "-conf", str(run / "conf")]
        for sub in ("log", "run", "db", "temp", "storage", "cache", "recordings", "certs"):
            args += [f"-{sub}", str(run / sub)]
        args += ["-mod", str(home / "lib" / "freeswitch" / "mod")]
        env = {k: v for k, v in os.environ.items() if k not in _FS_CONF_ENV}
        env.update(self.env)
        with open(run / "log" / "start.out", "wb") as out:
            # -nc: FreeSWITCH forks into the background and writes run/freeswitch.pid
            subprocess.run(args, cwd=run, env=env, stdout=out, stderr=subprocess.STDOUT, check=True,
                           timeout=30)
        deadline = time.monotonic() + timeout
        last = ""
        while time.monotonic() < deadline:
            if self.pid is None:
                try:
                    self.pid = int((run / "run" / "freeswitch.pid").read_text().strip())
                except (OSError, ValueError):
                    pass
            if self.pid is not None and not _alive(self.pid):
                break
            try:
                if self.api("status", timeout=3).startswith("UP") and all(
                        re.search(pattern, self.api(cmd, timeout=3)) for cmd, pattern in self.ready_checks):
                    return self
            except (OSError, Exception) as exc:  # noqa: BLE001 - not up yet
                last = f"{type(exc).__name__}: {exc}"
            time.sleep(0.3)
        tail = self.log.read_text(errors="replace")[-4000:] if self.log.exists() else ""
        start_out = (run / "log" / "start.out").read_text(errors="replace")
        self.stop()
        raise RuntimeError(f"FreeSWITCH {self.name} did not come up on ESL port {self.esl_port} ({last})\n"
                           f"{start_out}\n{tail}")

    def stop(self) -> None:
        if self.pid is None or not _alive(self.pid):
            return
        try:
            self.api("fsctl shutdown", timeout=3)
        except Exception:  # noqa: BLE001 - going down anyway
            pass
        for sig, wait in ((None, 15.0), (signal.SIGTERM, 5.0), (signal.SIGKILL, 5.0)):
            if sig is not None:
                try:
                    os.kill(self.pid, sig)
                except ProcessLookupError:
                    return
            deadline = time.monotonic() + wait
            while time.monotonic() < deadline:
                if not _alive(self.pid):
                    return
                time.sleep(0.1)


def _alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:  # pragma: no cover - someone else's process
        return True
    try:
        return Path(f"/proc/{pid}/comm").read_text().strip() == "freeswitch"
    except OSError:
        return False


#: Environment variables fs_conf/vars.xml reads; cleared so the caller's shell cannot leak in.
_FS_CONF_ENV = frozenset({
    "ESL_PASSWORD", "ESL_LISTEN_IP", "ESL_PORT", "DIALER_NETWORK", "ZENSCALL_AUDIO_DIR", "CDR_DIR",
    "MEDIA_TIMEOUT_MS", "CARRIER_HOST", "CARRIER_USERNAME", "CARRIER_PASSWORD", "CARRIER_CALLER_ID",
    "SIP_IP", "EXTERNAL_IP", "SIP_PORT", "RTP_START_PORT", "RTP_END_PORT",
})


def _set_param(text: str, name: str, value: str) -> str:
    new, count = re.subn(rf'(<param name="{re.escape(name)}" value=")[^"]*(")', rf"\g<1>{value}\g<2>", text)
    if count != 1:
        raise RuntimeError(f"switch.conf.xml: param {name} found {count} times")
    return new


def carrier_switch(run_dir: Path, *, taken: set[int] | None = None,
                   switch_params: dict[str, str] | None = None) -> Instance:
    """The package's configuration in ``run_dir/conf`` on free ports (not started).

    ``instance.ports``: ``carrier`` and ``outbound`` (SIP, UDP); ``switch_params`` overrides
    ``switch.conf.xml`` params (e.g. ``sessions-per-second``, ``loglevel``) for this run."""
    home = fs_home()
    conf = run_dir / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(home / "etc" / "freeswitch", conf)
    for path in conf.rglob("*"):
        path.chmod(path.stat().st_mode | 0o200)
    taken = taken if taken is not None else set()
    esl = free_port(taken)
    sip_base = free_port(taken, span=11)
    vars_xml = conf / "vars.xml"
    text = vars_xml.read_text()
    for name, value in (("esl_port", esl), ("outbound_sip_port", sip_base), ("carrier_sip_port", sip_base + 10)):
        text, count = re.subn(rf'data="{name}=\d+"', f'data="{name}={value}"', text)
        if count != 1:
            raise RuntimeError(f"{vars_xml}: no {name}")
    vars_xml.write_text(text)
    switch = conf / "autoload_configs" / "switch.conf.xml"
    text = switch.read_text()
    low, high = rtp_window(2000)
    params = {"rtp-start-port": str(low), "rtp-end-port": str(high), **(switch_params or {})}
    for name, value in params.items():
        text = _set_param(text, name, value)
    switch.write_text(text)
    return Instance("carrier", run_dir, esl, "ClueCon", ports={"carrier": sip_base + 10, "outbound": sip_base},
                    ready_checks=(("sofia status", r"(?m)^\s*carrier\s+profile\s.*RUNNING"),
                                  ("sofia status", r"(?m)^\s*outbound\s+profile\s.*RUNNING")))


def zenscall_switch(run_dir: Path, carrier: Instance, *, cdr_dir: Path, password: str,
                    taken: set[int] | None = None, extra_env: dict[str, str] | None = None) -> Instance:
    """The project's fs_conf/ (copied as is) in ``run_dir/conf``, its gateway ``carrier``
    pointed at the carrier switch's ``carrier`` profile (not started)."""
    conf = run_dir / "conf"
    if conf.exists():
        shutil.rmtree(conf)
    shutil.copytree(FS_CONF, conf)
    taken = taken if taken is not None else set()
    esl = free_port(taken)
    sip = free_port(taken)
    low, high = rtp_window()
    cdr_dir.mkdir(parents=True, exist_ok=True)
    env = {
        "ESL_PASSWORD": password, "ESL_PORT": str(esl), "SIP_PORT": str(sip), "SIP_IP": "127.0.0.1",
        "EXTERNAL_IP": "127.0.0.1", "RTP_START_PORT": str(low), "RTP_END_PORT": str(high),
        "CDR_DIR": str(cdr_dir), "CARRIER_HOST": f"127.0.0.1:{carrier.ports['carrier']}",
        **(extra_env or {}),
    }
    return Instance("zenscall", run_dir, esl, password, env=env, ports={"external": sip},
                    ready_checks=(("sofia status", r"(?m)^\s*external\s+profile\s.*RUNNING"),))
