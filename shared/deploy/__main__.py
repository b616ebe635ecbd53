"""python -m shared.deploy status|promote|rollback --service NAME --region R --project P | grant-db
| release start|watch|abort --service NAME --region R --project P --env staging|production"""

from __future__ import annotations

import argparse
import json
import os
import sys

from shared.deploy.errors import DeployError


def _parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m shared.deploy", description="Revisions, traffic and database grants of a deployed environment."
    )
    sub = parser.add_subparsers(dest="command", required=True)

    def service_command(name: str, help_text: str) -> argparse.ArgumentParser:
        p = sub.add_parser(name, help=help_text)
        p.add_argument("--service", required=True, help="Cloud Run service, e.g. netra-ws-bridge or netra-auth")
        p.add_argument("--region", required=True, help="region, e.g. europe-west1")
        p.add_argument("--project", required=True, help="project id")
        p.add_argument("--json", action="store_true", help="print the result as JSON")
        return p

    service_command("status", "list revisions, readiness and traffic")
    promote = service_command("promote", "move all traffic to a revision once it is healthy")
    promote.add_argument("--revision", help="revision name (default: the newest)")
    promote.add_argument(
        "--health-url", help="checked before traffic moves; {revision_url} = the revision's tagged URL"
    )
    promote.add_argument("--verify-url", help="checked after traffic moved; failure restores the previous traffic")
    rollback = service_command("rollback", "move all traffic back to the previous ready revision")
    rollback.add_argument("--to", dest="to_revision", help="revision name (default: previous ready one)")
    sub.add_parser("grant-db", help="grant DML to the services' database users (run by the migration job)")

    release = sub.add_parser("release", help="canary release: start, watch or abort (shared/deploy/canary.py)")
    release_sub = release.add_subparsers(dest="release_command", required=True)
    for name, help_text in (
        (
            "start",
            "release a revision in steps with a gate at each; exits 0 promoted, 5 rolled back, "
            "6 not ready or smoke test failed, 7 aborted, 8 too little traffic (held too long)",
        ),
        ("watch", "live view of the release in progress: step, traffic split, gate figures"),
        ("abort", "roll the release in progress back: 100% to the stable revision"),
    ):
        p = release_sub.add_parser(name, help=help_text)
        p.add_argument("--service", required=True, help="Cloud Run service, e.g. netra-ws-bridge or netra-auth")
        p.add_argument("--region", required=True, help="region, e.g. europe-west1")
        p.add_argument("--project", required=True, help="project id")
        p.add_argument("--env", required=True, choices=["staging", "production"], help="selects the policy")
        if name == "start":
            p.add_argument("--revision", help="candidate revision (default: the newest)")
            p.add_argument("--no-token", action="store_true", help="smoke test without an identity token")
        if name == "watch":
            p.add_argument("--interval", type=float, default=15.0, help="seconds between refreshes")
            p.add_argument("--once", action="store_true", help="print one view and exit")
    return parser


def _release(args: argparse.Namespace) -> int:
    import signal

    from shared.deploy.canary import Progress, ReleaseEngine, abort
    from shared.deploy.clock import SystemClock
    from shared.deploy.metrics import MonitoringReader, make_monitoring_client
    from shared.deploy.release_policy import load_policy
    from shared.deploy.release_watch import watch
    from shared.deploy.traffic import TrafficManager, make_clients
    from shared.logging import configure_logging

    # JSON lines in a Cloud Run job, so the rollback entry lands in Cloud Logging as jsonPayload.
    configure_logging("release", "INFO", "json" if os.environ.get("CLOUD_RUN_JOB") else "auto", args.project)
    services, revisions = make_clients()
    manager = TrafficManager(services, revisions, args.project, args.region)
    if args.release_command == "abort":
        status = abort(manager, args.service)
        _print_status(status, False)
        return 0
    policy = load_policy(args.service, args.env)
    reader = MonitoringReader(make_monitoring_client(), args.project)
    clock = SystemClock()
    if args.release_command == "watch":
        watch(
            manager,
            reader,
            policy,
            clock,
            args.service,
            lambda text: print(text + "\n", flush=True),
            interval_s=args.interval,
            once=args.once,
        )
        return 0

    def show(p: Progress) -> None:
        figures = ""
        if p.verdict is not None:
            c, s = p.verdict.candidate, p.verdict.stable
            figures = (
                f" {p.verdict.outcome}: candidate {c.requests} req {c.share_5xx:.2%} 5xx p95 {c.p95_ms} ms"
                f" | stable {s.requests} req {s.share_5xx:.2%} 5xx p95 {s.p95_ms} ms"
            )
        print(f"{p.phase:<12} {p.percent:>3}% {p.split}{figures} {p.note}".rstrip(), flush=True)

    def terminate(signum: int, frame: object) -> None:
        raise KeyboardInterrupt  # a cancelled job execution (SIGTERM) rolls back like Ctrl-C

    signal.signal(signal.SIGTERM, terminate)
    token = None if args.no_token else _identity_token(manager.status(args.service).uri)
    engine = ReleaseEngine(manager, reader, policy, clock, on_progress=show)
    try:
        result = engine.run(args.service, args.revision, token=token)
    except KeyboardInterrupt:
        try:
            abort(manager, args.service, reason="release process interrupted")
        except DeployError as exc:
            if exc.code != "no_release":  # interrupted before any traffic moved: nothing to undo
                raise
        print("error: aborted: release interrupted; traffic back on the stable revision", file=sys.stderr)
        return 7
    print(f"{result.outcome}: {result.candidate} (previous {result.stable})")
    return 0


def _identity_token(audience: str) -> str | None:
    """An identity token for the smoke test of a private service (the agent worker): from the metadata
    server in the release job, or service-account credentials locally. None where there is none (a user's
    own login cannot mint one this way); public services need none."""
    if not (os.environ.get("CLOUD_RUN_JOB") or os.environ.get("GOOGLE_APPLICATION_CREDENTIALS")):
        return None  # probing for a metadata server elsewhere costs seconds and finds none
    try:
        import google.auth.transport.requests
        from google.oauth2 import id_token

        return id_token.fetch_id_token(google.auth.transport.requests.Request(), audience)
    except Exception:  # any failure means: smoke test without a token
        return None


def _print_status(status: object, as_json: bool) -> None:
    data = status.as_dict()  # type: ignore[attr-defined]
    if as_json:
        print(json.dumps(data, indent=2))
        return
    print(f"service {data['service']}  {data['uri']}")
    print(f"{'revision':<44} {'created':<27} {'ready':<22} {'traffic':>7}  tags")
    for r in data["revisions"]:
        ready = "yes" if r["ready"] else f"no ({r['ready_state']})"
        print(f"{r['name']:<44} {r['created'][:26]:<27} {ready:<22} {r['percent']:>6}%  {','.join(r['tags'])}")


def main(argv: list[str] | None = None) -> int:
    args = _parser().parse_args(argv)
    if args.command == "grant-db":
        from shared.deploy.db_grants import main as grant_main

        return grant_main()

    if args.command == "release":
        try:
            return _release(args)
        except DeployError as exc:
            print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
            return exc.exit_code

    from shared.deploy.traffic import TrafficManager, make_clients

    try:
        services, revisions = make_clients()
        manager = TrafficManager(services, revisions, args.project, args.region)
        if args.command == "status":
            result = manager.status(args.service)
        elif args.command == "promote":
            result = manager.promote(args.service, args.revision, args.health_url, args.verify_url)
        else:
            result = manager.rollback(args.service, args.to_revision)
    except DeployError as exc:
        print(f"error: {exc.code}: {exc.message}", file=sys.stderr)
        return exc.exit_code
    _print_status(result, args.json)
    return 0


if __name__ == "__main__":
    sys.exit(main())
