"""The long run of the dialer's model-based test (``tests/model/machine.py``).

Usage: ``python bench/model.py [--examples 40] [--steps 25] [--skip RULE,...] [--shrink] [--seed N] [--keep-logs]``

Starts the same private services as the CI test (MariaDB, Redis, simulator, RQ worker, dialers;
``tests/model/services.py``), runs ``--examples`` random examples of ``--steps`` steps each, and
prints how many examples and steps ran, what they did (calls, channels, answered, unknown
outcomes, steps by rule) and the first failure with the steps of its example. Exit status 0 when
every example kept every invariant. ``--skip`` leaves rules out (to look past a known failure);
``--shrink`` lets hypothesis shrink a failing example (each
run of an example takes seconds of real processes: shrinking can take long).
"""

from __future__ import annotations

import argparse
import shutil
import signal
import sys
import tempfile
import time
import traceback
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(ROOT))

from hypothesis import HealthCheck, Phase, seed, settings  # noqa: E402
from hypothesis.stateful import run_state_machine_as_test  # noqa: E402

from tests.model.machine import RULES, DialerModel, Harness  # noqa: E402
from tests.model.services import Services, stop_all  # noqa: E402


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--examples", type=int, default=40)
    parser.add_argument("--steps", type=int, default=25)
    parser.add_argument("--skip", default="", help=f"comma-separated rules left out, of {','.join(RULES)}")
    parser.add_argument("--shrink", action="store_true", help="shrink a failing example")
    parser.add_argument("--seed", type=int, default=None, help="hypothesis seed (random by default)")
    parser.add_argument("--keep-logs", action="store_true", help="keep the temporary directory")
    args = parser.parse_args()
    skip = frozenset(r for r in args.skip.split(",") if r)
    if skip - set(RULES):
        parser.error(f"unknown rules: {sorted(skip - set(RULES))}")

    tmp = Path(tempfile.mkdtemp(prefix="zc-model-"))
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(143))
    began = time.monotonic()
    failure: BaseException | None = None
    harness: Harness | None = None
    try:
        services = Services(tmp, import_stall_seconds=3)
        services.start_worker()
        harness = Harness(services, skip)
        print(f"private MariaDB on 127.0.0.1:{services.db.port}, Redis on 127.0.0.1:{services.redis.port}, "
              f"logs in {tmp}" + (f"; rules left out: {sorted(skip)}" if skip else ""), file=sys.stderr)
        DialerModel.harness = harness
        phases = [Phase.generate, Phase.shrink] if args.shrink else [Phase.generate]
        machine = seed(args.seed)(DialerModel) if args.seed is not None else DialerModel
        try:
            run_state_machine_as_test(machine, settings=settings(
                max_examples=args.examples, stateful_step_count=args.steps, deadline=None, database=None,
                phases=phases, suppress_health_check=list(HealthCheck)))
        except BaseException as exc:  # noqa: BLE001 - reported below
            failure = exc
            traceback.print_exc()
    finally:
        stop_all()
        if harness is not None:
            harness.services.sql.dispose()
    seconds = time.monotonic() - began
    if harness is not None:
        print(harness.figures.summary())
    print(f"\n{'FAIL' if failure else 'PASS'}: {args.examples} examples of up to {args.steps} steps asked, "
          f"{harness.figures.examples if harness else 0} run in {seconds:.0f} s")
    if failure is None and not args.keep_logs:
        shutil.rmtree(tmp, ignore_errors=True)
    else:
        print(f"logs kept in {tmp}", file=sys.stderr)
    return 1 if failure is not None else 0


if __name__ == "__main__":
    sys.exit(main())
