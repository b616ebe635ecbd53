"""`python -m tests.loadtest` (`make loadtest`): the cold-start load tests; see docs/performance/loadtest.md.

Examples:
  python -m tests.loadtest                          # every scenario at default size, into loadtest-results/
  python -m tests.loadtest --size tiny --out /tmp/lt
  python -m tests.loadtest --scenarios 1 --targets sample --ks 1,2 --burst 20
  python -m tests.loadtest --scenarios 5 --remote-auth-url https://auth-xyz.a.run.app --remote-token "$TOKEN"
"""

from __future__ import annotations

import argparse
import os
import sys
import warnings
from pathlib import Path

from shared.config import REPO_ROOT
from tests.loadtest.context import RunContext
from tests.loadtest.progress import Progress
from tests.loadtest.sizes import PRESETS
from tests.loadtest.targets import ALL_TARGETS

REMOTE_URLS = ("empty", "auth", "agent", "ws")


def _ints(text: str) -> tuple[int, ...]:
    try:
        values = tuple(int(v) for v in text.split(",") if v.strip())
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected comma-separated integers such as 1,4,8, got {text!r}") from None
    if not values or any(v < 1 for v in values):
        raise argparse.ArgumentTypeError(f"expected positive integers such as 1,4,8, got {text!r}")
    return values


def _positive(text: str) -> int:
    return _ints(text)[0]


def parser() -> argparse.ArgumentParser:
    p = argparse.ArgumentParser(
        prog="python -m tests.loadtest", description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    p.add_argument("--size", choices=sorted(PRESETS), default="default", help="preset sizes (default: default)")
    p.add_argument("--scenarios", type=_ints, default=(1, 2, 3, 4, 5), help="comma-separated, from 1-5")
    p.add_argument("--targets", help=f"measure only these (the floors always run): {', '.join(ALL_TARGETS)}")
    p.add_argument("--out", type=Path, default=REPO_ROOT / "loadtest-results", help="output directory")
    p.add_argument("--ks", type=_ints, help="scenario 1: instance counts, e.g. 1,4,8")
    p.add_argument("--burst", type=_positive, help="scenario 1: concurrent requests per instance")
    p.add_argument("--rounds", type=_positive, help="scenario 1: repeats of each (target, K > 1)")
    p.add_argument("--k1-rounds", type=_positive, help="scenario 1: repeats of K=1")
    p.add_argument("--storm-clients", type=_positive, help="scenario 3: WebSocket clients")
    p.add_argument("--steady-s", type=float, help="scenario 4: measured seconds per target")
    p.add_argument("--db-delay-s", type=float, help="scenario 2: seconds the database starts late")
    for name in REMOTE_URLS:
        env = f"LOADTEST_REMOTE_{name.upper()}_URL"
        p.add_argument(
            f"--remote-{name}-url",
            default=os.environ.get(env),
            help=f"scenario 5: deployed {name} base URL (env {env})",
        )
    p.add_argument(
        "--remote-token",
        default=os.environ.get("LOADTEST_REMOTE_TOKEN"),
        help="scenario 5: an access token for the deployed services (env LOADTEST_REMOTE_TOKEN)",
    )
    p.add_argument(
        "--remote-force-cold",
        default=os.environ.get("LOADTEST_REMOTE_FORCE_COLD"),
        help="scenario 5: shell command run before each cold measurement, e.g. a gcloud command that "
        "deploys a new revision; {service} in it becomes empty, auth or agent-api "
        "(env LOADTEST_REMOTE_FORCE_COLD)",
    )
    p.add_argument("--remote-samples", type=_positive, default=3, help="scenario 5: cold measurements per URL")
    p.add_argument("--keep-tmp", action="store_true", help="keep the temporary stack directory")
    p.add_argument("--quiet", action="store_true", help="no progress display")
    return p


def main(argv: list[str] | None = None) -> int:
    warnings.filterwarnings("ignore", message=".*XDG_RUNTIME_DIR")  # platformdirs, harmless in containers
    args = parser().parse_args(argv)
    bad = [n for n in args.scenarios if n not in range(1, 6)]
    if bad:
        parser().error(f"--scenarios: unknown scenario(s) {bad}; choose from 1-5")
    only = None
    if args.targets:
        only = {t.strip() for t in args.targets.split(",") if t.strip()}
        unknown = only - set(ALL_TARGETS)
        if unknown:
            parser().error(f"--targets: unknown {', '.join(sorted(unknown))}; choose from {', '.join(ALL_TARGETS)}")
    sizes = PRESETS[args.size].with_overrides(
        ks=args.ks,
        burst=args.burst,
        rounds=args.rounds,
        k1_rounds=args.k1_rounds,
        storm_clients=args.storm_clients,
        steady_s=args.steady_s,
        db_delay_s=args.db_delay_s,
    )
    ctx = RunContext(out=args.out.resolve(), sizes=sizes, progress=Progress(quiet=args.quiet))
    ctx.remote = {
        "urls": {n: getattr(args, f"remote_{n}_url") for n in REMOTE_URLS},
        "token": args.remote_token,
        "force_cold": args.remote_force_cold,
        "samples": args.remote_samples,
    }
    from tests.loadtest.runner import run

    document = run(ctx, sorted(set(args.scenarios)), only, keep_tmp=args.keep_tmp)
    print(f"\nresults: {ctx.out / 'results.json'}\nsummary: {ctx.out / 'summary.md'}")
    for scenario in document["scenarios"]:
        reason = f" ({scenario['reason']})" if scenario["reason"] else ""
        print(f"  scenario {scenario['number']} {scenario['title']}: {scenario['status']}{reason}")
    return 1 if any(s["status"] in ("error", "failures") for s in document["scenarios"]) else 0


if __name__ == "__main__":
    sys.exit(main())
