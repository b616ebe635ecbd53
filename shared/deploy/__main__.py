"""python -m shared.deploy status|promote|rollback --service NAME --region R --project P | grant-db"""

from __future__ import annotations

import argparse
import json
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
    return parser


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
