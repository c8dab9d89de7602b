"""fs_conf/, docker-compose.yml, .env.example and the Procfiles, checked for structure and
for agreement with the code. No Docker engine or FreeSWITCH runs on our build machines, so
these files are validated here, not run."""

from __future__ import annotations

import glob
import importlib.util
import json
import logging
import os
import re
import shutil
import subprocess
import sys
import xml.etree.ElementTree as ET
from pathlib import Path

import pytest
import yaml
from honcho.environ import parse_procfile

from core.settings import ROOT, load_dashboard_settings, load_settings
from tests.ops.conftest import cli_env

FS_CONF = ROOT / "fs_conf"
BIN = Path(sys.executable).parent
_PRE = re.compile(r'<X-PRE-PROCESS\s+cmd="([^"]+)"\s+data="([^"]*)"\s*/>')
_GLOBAL = re.compile(r"\$\$\{([^}]+)\}")


# -- FreeSWITCH configuration --------------------------------------------------------------------


class FsConfig:
    """FreeSWITCH's pre-processor, as far as fs_conf/ uses it: include (globs relative to the
    including file), set, env-set (``name=$ENV``, applied only when the variable exists), and
    ``$${name}`` expansion; then the assembled document is parsed."""

    def __init__(self, root: Path, environ: dict[str, str] | None = None) -> None:
        self.root = root
        self.environ = environ or {}
        self.vars: dict[str, str] = {}
        self.env_names: dict[str, str] = {}  # FreeSWITCH variable -> environment variable
        self.included: list[Path] = []
        text = self._process(root / "freeswitch.xml")
        self.doc = ET.fromstring(text)

    def _process(self, path: Path) -> str:
        self.included.append(path.resolve())
        out = []
        for line in path.read_text().splitlines():
            match = _PRE.search(line)
            if match is None:
                out.append(_GLOBAL.sub(lambda m: self.vars.get(m.group(1), m.group(0)), line))
                continue
            cmd, data = match.groups()
            if cmd == "include":
                files = sorted(glob.glob(str(path.parent / data)))
                assert files, f"{path.name}: include {data!r} matches nothing"
                for name in files:
                    body = self._process(Path(name))
                    # like FreeSWITCH, drop the <include> wrapper of an included file
                    body = re.sub(r"^\s*<\?xml[^>]*\?>", "", body)
                    out.append(re.sub(r"</?include>", "", body))
            elif cmd == "set":
                name, _, value = data.partition("=")
                self.vars[name] = _GLOBAL.sub(lambda m: self.vars.get(m.group(1), ""), value)
            elif cmd == "env-set":
                name, _, value = data.partition("=")
                assert value.startswith("$"), f"env-set takes name=$VARIABLE, got {data!r}"
                self.env_names[name] = value[1:]
                if value[1:] in self.environ:
                    self.vars[name] = self.environ[value[1:]]
            else:
                pytest.fail(f"unexpected X-PRE-PROCESS cmd {cmd!r} in {path}")
        return "\n".join(out)

    def configuration(self, name: str) -> ET.Element:
        node = self.doc.find(f"./section[@name='configuration']/configuration[@name='{name}']")
        assert node is not None, f"no configuration {name}"
        return node

    @staticmethod
    def params(node: ET.Element) -> dict[str, str]:
        return {p.get("name"): p.get("value") for p in node.iter("param")}


@pytest.fixture(scope="module")
def fs() -> FsConfig:
    return FsConfig(FS_CONF)


@pytest.fixture(scope="module")
def defaults(tmp_path_factory) -> object:
    """The dialer's defaults: load_settings() with none of its variables set."""
    saved = dict(os.environ)
    try:
        for name in list(os.environ):
            if name.startswith(("FS_", "NODE_", "GATEWAY_", "DIALER_")):
                del os.environ[name]
        os.environ["VAR_DIR"] = str(tmp_path_factory.mktemp("defaults"))
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


@pytest.fixture(scope="module")
def compose() -> dict:
    return yaml.safe_load((ROOT / "docker-compose.yml").read_text())


def test_every_fs_conf_file_is_well_formed_and_included(fs):
    files = sorted(FS_CONF.rglob("*.xml"))
    assert files
    for path in files:
        ET.fromstring(path.read_text())  # X-PRE-PROCESS lines included: they are elements
    assert set(files) == set(fs.included), set(files) ^ set(fs.included)


def test_event_socket_matches_the_dialer(fs, defaults):
    esl = fs.params(fs.configuration("event_socket.conf"))
    assert int(esl["listen-port"]) == defaults.fs_port == 8021
    assert esl["listen-ip"] == "127.0.0.1"  # never open to the world by default
    raw = (FS_CONF / "autoload_configs/event_socket.conf.xml").read_text()
    assert 'name="password" value="$${esl_password}"' in raw
    assert fs.env_names["esl_password"] == "ESL_PASSWORD"
    assert esl["password"] != "ClueCon"
    with pytest.raises(Exception, match="placeholder"):  # the shipped default is refused in production
        os.environ.update({"ZC_ENV": "production"})
        try:
            _production_settings(FS_PASSWORD=esl["password"])
        finally:
            os.environ.pop("ZC_ENV")
    # the ACL applied to the event socket exists, denies by default and allows the dialer network only
    assert esl["apply-inbound-acl"] == "dialer"
    lists = fs.configuration("acl.conf").findall("./network-lists/list")
    (dialer,) = [x for x in lists if x.get("name") == "dialer"]
    assert dialer.get("default") == "deny"
    assert [(n.get("type"), n.get("cidr")) for n in dialer.findall("node")] == [("allow", "127.0.0.1/32")]


def _production_settings(**env: str):
    saved = dict(os.environ)
    try:
        os.environ.update({"SECRET_KEY": "s" * 40, "JWT_SECRET_KEY": "j" * 40,
                           "DATABASE_URL": "mysql+pymysql://u:p@db/zc", "REDIS_URL": "redis://r:6379/0", **env})
        return load_settings()
    finally:
        os.environ.clear()
        os.environ.update(saved)


def test_environment_overrides_reach_the_configuration():
    fs = FsConfig(FS_CONF, {"ESL_PASSWORD": "a-real-password", "CARRIER_HOST": "10.1.2.3",
                            "DIALER_NETWORK": "10.0.0.0/24", "ESL_PORT": "18021", "SIP_PORT": "15060",
                            "SIP_IP": "10.0.0.5", "EXTERNAL_IP": "203.0.113.7", "RTP_START_PORT": "20000",
                            "RTP_END_PORT": "29999", "CDR_DIR": "/var/spool/zenscall-cdr",
                            "MEDIA_TIMEOUT_MS": "15000"})
    esl = fs.params(fs.configuration("event_socket.conf"))
    assert (esl["password"], esl["listen-port"]) == ("a-real-password", "18021")
    gateway = fs.doc.find(".//gateway[@name='carrier']")
    assert fs.params(gateway)["proxy"] == "10.1.2.3"
    assert fs.doc.find(".//list[@name='dialer']/node").get("cidr") == "10.0.0.0/24"
    profile = fs.params(fs.doc.find(".//profile[@name='external']/settings"))
    assert (profile["sip-port"], profile["sip-ip"], profile["rtp-ip"]) == ("15060", "10.0.0.5", "10.0.0.5")
    assert profile["ext-sip-ip"] == profile["ext-rtp-ip"] == "203.0.113.7"
    switch = fs.params(fs.configuration("switch.conf"))
    assert (switch["rtp-start-port"], switch["rtp-end-port"]) == ("20000", "29999")
    cdr = fs.params(fs.configuration("json_cdr.conf"))
    assert cdr["log-dir"] == cdr["err-log-dir"] == "/var/spool/zenscall-cdr"
    assert fs.vars["media_timeout"] == "15000"


def test_gateway_is_the_dial_templates(fs, defaults):
    parts = defaults.fs_dial_template.split("/")
    assert parts[:2] == ["sofia", "gateway"] and parts[3] == "{number}"
    profile = fs.doc.find(".//configuration[@name='sofia.conf']/profiles/profile[@name='external']")
    assert profile is not None
    names = [g.get("name") for g in profile.findall("./gateways/gateway")]
    assert names == [parts[2]] == ["carrier"]
    gateway = fs.params(profile.find("./gateways/gateway"))
    assert gateway["register"] == "false" and gateway["proxy"]
    # inbound calls land in a context that exists and rejects them
    context = fs.params(profile.find("settings"))["context"]
    assert fs.doc.find(f"./section[@name='dialplan']/context[@name='{context}']") is not None


def test_codecs_are_g711_for_pakistani_carriers(fs):
    assert fs.vars["global_codec_prefs"] == fs.vars["outbound_codec_prefs"] == "PCMA,PCMU"
    settings = fs.params(fs.doc.find(".//profile[@name='external']/settings"))
    assert settings["outbound-codec-prefs"] == settings["inbound-codec-prefs"] == "PCMA,PCMU"


def test_modules_the_dialer_needs_are_loaded(fs):
    loaded = [m.get("module") for m in fs.configuration("modules.conf").iter("load")]
    # exactly what the switch needs (G.711 is in the core: no mod_spandsp, which the prebuilt
    # 1.11.1 package does not even have); tests/realswitch loads this list on a real switch
    assert sorted(loaded) == sorted({"mod_console", "mod_logfile", "mod_event_socket", "mod_sofia",
                                     "mod_commands", "mod_dptools", "mod_dialplan_xml", "mod_sndfile",
                                     "mod_json_cdr"})


def test_call_records_are_plain_json_files_per_leg_in_cdr_dir(fs):
    cdr = fs.params(fs.configuration("json_cdr.conf"))
    assert cdr["log-dir"] == cdr["err-log-dir"] == fs.vars["cdr_dir"] == "/srv/zenscall/cdr"
    assert fs.env_names["cdr_dir"] == "CDR_DIR"
    # plain values, <uuid>.cdr.json for our (A) legs, one flat directory, no HTTP post
    assert (cdr["encode-values"], cdr["prefix-a-leg"], cdr["log-b-leg"], cdr["rotate"]) == (
        "false", "false", "false", "false")
    assert "url" not in cdr and "cred" not in cdr


def test_every_call_has_a_timer_and_a_media_timeout(fs):
    """FreeSWITCH 1.10+ ignores the profile's rtp-timeout-sec (logs it as deprecated); without
    an RTP timer a callee that sends no media stalls playback for ever (tests/realswitch)."""
    settings = fs.params(fs.doc.find(".//profile[@name='external']/settings"))
    assert settings["rtp-timer-name"] == "soft"
    assert not {"rtp-timeout-sec", "rtp-hold-timeout-sec"} & set(settings)
    assert 5000 <= int(fs.vars["media_timeout"]) <= 120000  # global channel variables, ms
    assert int(fs.vars["media_hold_timeout"]) >= int(fs.vars["media_timeout"])


def test_switch_limits_cover_the_dialer_caps(fs, defaults):
    switch = fs.params(fs.configuration("switch.conf"))
    assert int(switch["max-sessions"]) >= defaults.node_max_channels
    assert int(switch["sessions-per-second"]) >= defaults.gateway_cps
    rtp_ports = int(switch["rtp-end-port"]) - int(switch["rtp-start-port"])
    assert rtp_ports >= 4 * defaults.node_max_channels  # 2 ports per leg, with room


def test_audio_directory_is_the_composes(fs, compose):
    audio = fs.vars["zenscall_audio_dir"]
    env = compose["x-app-env"]
    assert audio == env["FS_AUDIO_DIR"] == env["AUDIO_DIR"]
    assert compose["services"]["freeswitch"]["environment"]["ZENSCALL_AUDIO_DIR"] == audio
    for service in ("web", "dialer", "freeswitch"):
        mounts = compose["services"][service]["volumes"]
        assert any(m.split(":")[:2] == ["audio", audio] for m in mounts), (service, mounts)


# -- docker-compose.yml and .env.example ------------------------------------------------------------

SERVICES = {"mariadb", "redis", "freeswitch", "migrate", "web", "worker", "webhooks", "webhook-sweeper", "dialer",
            "dashboard"}
APP_SERVICES = {"migrate", "web", "worker", "webhooks", "webhook-sweeper", "dialer", "dashboard"}


def test_compose_services_health_and_restart(compose):
    services = compose["services"]
    assert set(services) == SERVICES
    for name, service in services.items():
        assert service.get("image"), name
        if name == "migrate":
            assert service["restart"] == "no"
            continue
        assert service["restart"] == "unless-stopped", name
        assert service["healthcheck"]["test"], name
    for name in APP_SERVICES:
        assert services[name]["build"] == "."
        assert services[name]["environment"]["ZC_ENV"] == "production"
    for name in ("web", "worker", "webhooks", "webhook-sweeper", "dialer"):  # after the schema is in place
        assert services[name]["depends_on"]["migrate"] == {"condition": "service_completed_successfully"}
    for name in ("migrate", "dashboard"):
        assert services[name]["depends_on"]["redis"] == {"condition": "service_healthy"}
    assert services["migrate"]["depends_on"]["mariadb"] == {"condition": "service_healthy"}
    assert services["web"]["healthcheck"]["test"][-1].find("/api/v1/health") > 0
    assert services["freeswitch"]["volumes"][0] == "./fs_conf:/etc/freeswitch:ro"
    assert compose["volumes"].keys() >= {"audio", "mariadb"}
    # the event socket stays on loopback: FreeSWITCH and the dialer share the host's network
    assert services["freeswitch"]["network_mode"] == services["dialer"]["network_mode"] == "host"
    assert services["dialer"]["environment"]["FS_HOST"] == "127.0.0.1"
    assert services["freeswitch"]["environment"]["ESL_PASSWORD"] == "${FS_PASSWORD}"
    for name in ("web", "dashboard", "mariadb", "redis"):
        for port in services[name].get("ports", []):
            assert port.startswith("127.0.0.1:"), (name, port)


def _env_example() -> dict[str, str]:
    pairs = {}
    for line in (ROOT / ".env.example").read_text().splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            name, _, value = line.partition("=")
            pairs[name.strip()] = value
    return pairs


def test_every_compose_variable_is_in_env_example():
    text = (ROOT / "docker-compose.yml").read_text()
    used = set(re.findall(r"(?<!\$)\$\{([A-Za-z_][A-Za-z0-9_]*)", text))
    assert used
    missing = used - set(_env_example())
    assert not missing, missing


def test_env_example_is_refused_until_filled_in(monkeypatch, tmp_path):
    monkeypatch.setenv("VAR_DIR", str(tmp_path))
    for name, value in _env_example().items():
        monkeypatch.setenv(name, value)
    monkeypatch.setenv("DATABASE_URL", "mysql+pymysql://u:p@db/zc")
    monkeypatch.setenv("REDIS_URL", "redis://redis:6379/0")
    with pytest.raises(Exception, match="placeholder"):
        load_settings()
    with pytest.raises(Exception, match="DASHBOARD_PASSWORD still holds the placeholder"):
        load_dashboard_settings()


def test_no_secret_on_a_command_line(compose):
    """``ps`` shows every process's arguments: secrets come from the environment or a file."""
    commands = [" ".join(_argv(compose["services"][name]["command"])) for name in APP_SERVICES]
    for procfile in ("Procfile", "Procfile.dev"):
        commands += [command for name, command in parse_procfile((ROOT / procfile).read_text()).processes.items()
                     if name != "simulator"]  # the development simulator's fixed test password
    assert commands
    for command in commands:
        assert "password" not in command.lower(), command
        for name in ("SECRET_KEY", "JWT_SECRET_KEY", "METRICS_TOKEN", "FS_PASSWORD", "DASHBOARD"):
            assert name not in command, command
    assert _argv(compose["services"]["dashboard"]["command"]) == ["python", "-m", "dashboard"]


def test_imports_run_below_the_api_in_cpu_priority(compose):
    """The RQ worker parses CSV uploads of up to MAX_CSV_BYTES: the API and the dialer come first."""
    worker = parse_procfile((ROOT / "Procfile").read_text()).processes["worker"].split()
    assert worker[:3] == ["nice", "-n", "10"] and worker[3:5] == ["rq", "worker"]
    assert _argv(compose["services"]["worker"]["command"])[:5] == ["nice", "-n", "10", "rq", "worker"]


def _argv(command) -> list[str]:
    return command if isinstance(command, list) else command.split()


@pytest.fixture(scope="module")
def wsgi_probe(settings):
    """Import wsgi as gunicorn would and list its CLI commands (one subprocess)."""
    script = (
        "import json, wsgi\n"
        "cli = wsgi.app.cli\n"
        "print(json.dumps({g: sorted(cli.get_command(None, g).list_commands(None)) "
        "for g in cli.list_commands(None) if hasattr(cli.get_command(None, g), 'list_commands')}))\n"
    )
    result = subprocess.run([sys.executable, "-c", script], cwd=ROOT, env={**cli_env(settings), "LOG_LEVEL": "ERROR"},
                            capture_output=True, text=True, timeout=60)
    assert result.returncode == 0, result.stderr[-2000:]
    return json.loads(result.stdout.strip().splitlines()[-1])


def check_command(argv: list[str], wsgi_probe: dict) -> None:
    """The program exists and what it is asked to run exists in the code."""
    if argv[:2] == ["nice", "-n"]:  # background work at a lower CPU priority
        assert shutil.which("nice") and int(argv[2]) > 0, argv
        argv = argv[3:]
    program = argv[0]
    assert shutil.which(program, path=f"{BIN}{os.pathsep}{os.environ.get('PATH', '')}"), program
    if program == "gunicorn":
        assert "wsgi:app" in argv and wsgi_probe  # wsgi imported and built its app
        # the worker class comes from gunicorn.conf.py (gevent, errors in the JSON envelope):
        # a command line naming one would win over it
        assert not any(a == "-k" or a.startswith("--worker-class") for a in argv), argv
        assert importlib.util.find_spec("gevent")
    elif program == "flask":
        assert argv[1:3] == ["--app", "wsgi"]
        group, command = argv[3], argv[4]
        assert command in wsgi_probe[group], (group, command)
    elif program == "python":
        assert argv[1] == "-m" and importlib.util.find_spec(argv[2] + ".__main__") is not None, argv
    elif program == "rq":
        from rq.cli import main as rq_main

        assert argv[1] in rq_main.commands
        options = {o for p in rq_main.commands[argv[1]].params for o in p.opts}
        assert {a for a in argv[2:] if a.startswith("--")} <= options
    else:
        pytest.fail(f"unexpected program {program}")


def test_compose_commands_exist(compose, wsgi_probe):
    services = compose["services"]
    for name in APP_SERVICES:
        check_command(_argv(services[name]["command"]), wsgi_probe)
    (cmd,) = [line for line in (ROOT / "Dockerfile").read_text().splitlines() if line.startswith("CMD ")]
    check_command(json.loads(cmd.removeprefix("CMD ")), wsgi_probe)
    assert "dialer" in wsgi_probe and "status" in wsgi_probe["dialer"]  # the dialer's healthcheck


@pytest.mark.parametrize("procfile", ["Procfile", "Procfile.dev"])
def test_procfile_parses_and_its_commands_exist(procfile, wsgi_probe):
    path = ROOT / procfile
    parsed = parse_procfile(path.read_text())
    processes = parsed.processes
    if procfile == "Procfile":
        assert set(processes) == {"release", "web", "worker", "dialer", "webhooks", "webhook-sweeper", "dashboard"}
    else:  # make run: the same processes beside the simulator (FS_HOST set: all but the simulator)
        assert set(processes) == {"web", "worker", "dialer", "webhooks", "webhook-sweeper", "dashboard",
                                  "simulator"}
    for command in processes.values():
        # shell syntax (${VAR:-default}, "$VAR") is the shell's; the words are what we check
        argv = [w.strip('"') for w in command.split()]
        check_command(argv, wsgi_probe)


def test_honcho_check_accepts_the_procfile():
    honcho = shutil.which("honcho", path=str(BIN)) or "honcho"
    result = subprocess.run([honcho, "-f", str(ROOT / "Procfile"), "check"], cwd=ROOT, capture_output=True,
                            text=True, timeout=30)
    assert result.returncode == 0, result.stderr
    assert "release" in result.stderr + result.stdout


def test_dockerfile_and_gunicorn_conf(tmp_path, monkeypatch):
    dockerfile = (ROOT / "Dockerfile").read_text()
    assert "requirements.txt" in dockerfile and "USER nobody" in dockerfile
    assert "/srv/zenscall/audio" in dockerfile
    import runpy

    target = tmp_path / "prom"
    (target).mkdir()
    (target / "stale.db").write_text("x")
    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(target))
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))
    from gunicorn.app.base import Application
    from gunicorn.workers.ggevent import GeventWorker

    from api.gunicorn_worker import JsonErrorGeventWorker

    class Server:  # what on_starting reads of gunicorn's arbiter
        def __init__(self, worker_class: type) -> None:
            self.worker_class = worker_class
            self.log = logging.getLogger("test.gunicorn")

    conf["on_starting"](Server(JsonErrorGeventWorker))
    assert target.is_dir() and not list(target.iterdir())
    # the file's worker class is the JSON one, and gunicorn resolves it so
    assert conf["worker_class"] == "api.gunicorn_worker.JsonErrorGeventWorker"
    assert conf["control_socket_disable"] is True

    class Conf(Application):  # gunicorn's own reading of the file, no command line
        def init(self, *args):
            return None

        def load(self):
            return None

    monkeypatch.setattr(sys, "argv", ["gunicorn"])
    monkeypatch.chdir(ROOT)
    cfg = Conf().cfg
    assert cfg.worker_class is JsonErrorGeventWorker and issubclass(cfg.worker_class, GeventWorker)
    assert cfg.control_socket_disable is True


def test_gunicorn_conf_warns_about_another_worker_class(caplog, tmp_path, monkeypatch):
    import runpy

    from gunicorn.workers.ggevent import GeventWorker

    monkeypatch.setenv("PROMETHEUS_MULTIPROC_DIR", str(tmp_path / "prom"))
    conf = runpy.run_path(str(ROOT / "gunicorn.conf.py"))

    class Server:
        worker_class = GeventWorker
        log = logging.getLogger("test.gunicorn")

    with caplog.at_level(logging.WARNING, logger="test.gunicorn"):
        conf["on_starting"](Server())
    assert "JSON errors" in caplog.text and "GeventWorker" in caplog.text


def test_the_sweeper_heartbeat_is_the_one_compose_checks(compose):
    from core.redis_keys import WEBHOOK_SWEEPER_KEY

    assert WEBHOOK_SWEEPER_KEY in " ".join(compose["services"]["webhook-sweeper"]["healthcheck"]["test"])
    worker = _argv(compose["services"]["webhooks"]["command"])
    assert worker[:3] == ["rq", "worker", "webhooks"] and "rq.SimpleWorker" in worker
