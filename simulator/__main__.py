from gevent import monkey; monkey.patch_all()  # noqa: E702,I001 - must run before anything else

"""``python -m simulator --host H --port P --password PW [options]``.

Prints ``LISTENING <host>:<port>`` once bound (``--port 0`` picks a free port).
"""
import argparse  # noqa: E402
import signal  # noqa: E402
import sys  # noqa: E402

import gevent  # noqa: E402

from .calls import LoadProfile  # noqa: E402
from .server import Config, Simulator  # noqa: E402


def _range(text: str) -> tuple:
    a, _, b = text.partition("-")
    return (float(a), float(b or a))


def parse_args(argv=None) -> argparse.Namespace:
    p = argparse.ArgumentParser(prog="python -m simulator", description=__doc__)
    p.add_argument("--host", default="127.0.0.1")
    p.add_argument("--port", type=int, default=8021)
    p.add_argument("--password", default="ClueCon")
    p.add_argument("--time-scale", type=float, default=1.0,
                   help="divide every wait by this; reported times stay in simulated seconds")
    p.add_argument("--heartbeat", type=float, default=20.0,
                   help="seconds between HEARTBEAT/RE_SCHEDULE events (0 disables)")
    p.add_argument("--max-channels", type=int, default=0,
                   help="originates beyond this many live channels fail (0: no limit)")
    p.add_argument("--gateways", default="carrier", help="comma-separated known gateways")
    p.add_argument("--mode", choices=("digits", "load"), default="digits",
                   help="digits: outcome by the number's last digit; load: random by rates")
    p.add_argument("--answer-rate", type=float, default=0.6)
    p.add_argument("--busy-rate", type=float, default=0.2)
    p.add_argument("--no-answer-rate", type=float, default=0.1)
    p.add_argument("--fail-rate", type=float, default=0.1)
    p.add_argument("--ring-seconds", type=_range, default=(0.5, 3.0), help="a-b")
    p.add_argument("--talk-seconds", type=_range, default=(2.0, 10.0), help="a-b")
    p.add_argument("--answer-delay", type=float, default=0.02,
                   help="digits mode: simulated seconds until the far end responds")
    p.add_argument("--seed", type=int, default=None)
    p.add_argument("--call-log", default=None, help="append one JSON line per finished call")
    p.add_argument("--cdr-dir", default=None,
                   help="write <uuid>.cdr.json per finished call into this directory (like mod_json_cdr)")
    p.add_argument("--media-timeout-ms", type=int, default=0,
                   help="a callee that sends no media (number ending in 0) is hung up with MEDIA_TIMEOUT "
                        "after this many ms, like fs_conf's media_timeout (30000); 0: never")
    return p.parse_args(argv)


def config_from_args(a: argparse.Namespace) -> Config:
    return Config(
        time_scale=a.time_scale, heartbeat=a.heartbeat, max_channels=a.max_channels,
        gateways=tuple(g for g in a.gateways.split(",") if g), mode=a.mode,
        load=LoadProfile(a.answer_rate, a.busy_rate, a.no_answer_rate, a.fail_rate,
                         a.ring_seconds, a.talk_seconds, a.seed),
        answer_delay=a.answer_delay, call_log=a.call_log, cdr_dir=a.cdr_dir,
        media_timeout_ms=a.media_timeout_ms)


def main(argv=None) -> int:
    a = parse_args(argv)
    sim = Simulator(a.host, a.port, a.password, config_from_args(a)).start()
    sys.stdout.write(f"LISTENING {a.host}:{sim.port}\n")
    sys.stdout.flush()
    done = gevent.event.Event()
    for sig in (signal.SIGTERM, signal.SIGINT):
        gevent.signal_handler(sig, done.set)
    sim.on_stop = done.set
    done.wait()
    sim.stop()
    return 0


if __name__ == "__main__":
    sys.exit(main())
