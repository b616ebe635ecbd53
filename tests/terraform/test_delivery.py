"""The canary delivery resources (terraform/modules/platform/delivery.tf) against the code they run: the job
and the apply trigger call the release CLI with arguments it accepts, every service is covered, new
revisions take no traffic by themselves, the release identity holds only what it needs, and the gate's
log-based metrics and the rollback alert match the names the code reads and the lines it writes."""

from __future__ import annotations

import re
import subprocess

from shared.config import REPO_ROOT
from shared.deploy.__main__ import _parser
from shared.deploy.release_policy import load_policy
from tests.terraform.hcl import TERRAFORM_DIR, module, platform

SAMPLES = {
    "${each.value.service}": "netra-auth",
    "${var.region}": "europe-west1",
    "${var.project_id}": "netra-staging",
}


def _release_args(command: str, environment: str) -> list[str]:
    match = re.search(r"--args=(\S+?)\"?(?:\s|\]|$)", command)
    assert match, f"no --args in {command!r}"
    args = match.group(1)
    for placeholder, value in {**SAMPLES, "${var.environment}": environment}.items():
        args = args.replace(placeholder, value)
    assert "${" not in args, f"unresolved interpolation in {args!r}"
    return args.split(",")


def test_apply_starts_a_release_of_every_service_with_arguments_the_cli_accepts() -> None:
    p = platform()
    release = p["resource"]["terraform_data"]["release"]
    assert release["for_each"] == "${var.release_on_apply ? local.release_services : {}}"
    command = release["provisioner"][0]["local-exec"]["command"]
    assert "gcloud run jobs execute ${google_cloud_run_v2_job.release.name}" in command and "--async" in command
    for env_dir in ("staging", "prod"):
        environment = module(TERRAFORM_DIR / "environments" / env_dir)["module"]["netra"]["environment"]
        args = _parser().parse_args(_release_args(command, environment))
        assert (args.command, args.release_command, args.service, args.env) == (
            "release",
            "start",
            "netra-auth",
            environment,
        )
    # Every function and ws_bridge, keyed like their runtime service accounts.
    services = p["locals"]["release_services"]
    for function in p["locals"]["functions"]:
        assert "module.function_source[k].object" in services and function in p["locals"]["workloads"]
    assert '"ws-bridge" = {service = google_cloud_run_v2_service.ws_bridge.name' in services
    assert "ws_bridge.latest_created_revision" in services


def test_new_revisions_take_no_traffic_by_themselves() -> None:
    p = platform()
    assert p["module"]["function"]["all_traffic_on_latest_revision"] is False
    # ws_bridge starts on LATEST (a service needs traffic to exist); Terraform leaves traffic alone afterwards
    # and the first release pins it (tests/deploy/test_canary.py checks the pinning).
    assert "traffic" in p["resource"]["google_cloud_run_v2_service"]["ws_bridge"]["lifecycle"][0]["ignore_changes"][0]


def test_release_job_runs_the_release_cli_in_the_cloud() -> None:
    job = platform()["resource"]["google_cloud_run_v2_job"]["release"]
    template = job["template"][0]["template"][0]
    assert template["service_account"] == "${google_service_account.release.email}"
    assert template["max_retries"] == 0
    assert template["vpc_access"][0]["egress"] == "ALL_TRAFFIC"  # smoke test of internal-ingress run.app URLs
    container = template["containers"][0]
    assert container["command"] == ["python", "-m", "shared.deploy"]
    assert (REPO_ROOT / "shared" / "deploy" / "__main__.py").is_file()


def test_release_identity_holds_only_what_the_engine_needs() -> None:
    resources = platform()["resource"]
    grants: list[tuple[str, str, str]] = []
    for rtype, blocks in resources.items():
        for name, body in blocks.items():
            if body.get("member") == "serviceAccount:${google_service_account.release.email}":
                grants.append((rtype, name, body["role"]))
    assert sorted(grants) == [
        ("google_cloud_run_service_iam_member", "release_functions", "roles/run.developer"),
        ("google_cloud_run_service_iam_member", "release_smoke_worker", "roles/run.invoker"),
        ("google_cloud_run_v2_service_iam_member", "release_ws_bridge", "roles/run.developer"),
        ("google_project_iam_member", "release_metrics", "roles/monitoring.viewer"),
        ("google_service_account_iam_member", "release_act_as", "roles/iam.serviceAccountUser"),
    ]
    assert resources["google_cloud_run_service_iam_member"]["release_functions"]["for_each"] == "${local.functions}"
    act_as = resources["google_service_account_iam_member"]["release_act_as"]
    assert act_as["for_each"] == "${local.release_services}"  # the four runtime identities, not migrate/rollup


def test_gate_metrics_and_rollback_alert_match_the_code() -> None:
    resources = platform()["resource"]
    prefix = platform()["variable"]["name_prefix"]["default"]
    metrics = {
        f"logging.googleapis.com/user/{body['name'].replace('${var.name_prefix}', prefix)}"
        for body in resources["google_logging_metric"].values()
    }
    for service in ("netra-auth", "netra-agent-api", "netra-agent-worker", "netra-ws-bridge"):
        for env in ("staging", "production"):
            gate = load_policy(service, env).gate
            assert gate.start_failure_metric in metrics
            assert set(gate.error_log_metrics) <= metrics
    alert = resources["google_monitoring_alert_policy"]["release_rolled_back"]
    log_filter = alert["conditions"][0]["condition_matched_log"][0]["filter"]
    code = (REPO_ROOT / "shared" / "deploy" / "canary.py").read_text()
    for event in re.findall(r'jsonPayload.event=\("(\w+)" OR "(\w+)"\)', log_filter)[0]:
        assert f'"event": "{event}"' in code, f"the code never logs event={event}"
    assert 'resource.labels.job_name="${local.release_job_name}"' in log_filter
    assert platform()["locals"]["release_job_name"] == "${var.name_prefix}-release"


def test_make_targets_call_the_release_cli_and_job() -> None:
    def dry_run(target: str) -> str:
        out = subprocess.run(
            ["make", "-n", target, "SERVICE=netra-auth", "ENV=staging", "PROJECT=netra-staging", "REGION=europe-west1"],
            cwd=REPO_ROOT,
            capture_output=True,
            text=True,
            timeout=30,
        )
        assert out.returncode == 0, out.stderr
        return out.stdout.replace("\\\n", " ")

    start = dry_run("release-start")
    job = platform()["locals"]["release_job_name"].replace("${var.name_prefix}", "netra")  # default prefix
    assert re.search(rf"gcloud run jobs execute {job} ", start), start
    args = _parser().parse_args(re.search(r"--args=(\S+)", start).group(1).split(","))  # type: ignore[union-attr]
    assert (args.release_command, args.service, args.env, args.project) == (
        "start",
        "netra-auth",
        "staging",
        "netra-staging",
    )
    for target, sub in (("release-run", "start"), ("release-watch", "watch"), ("release-abort", "abort")):
        line = next(line for line in dry_run(target).splitlines() if "-m shared.deploy" in line)
        args = _parser().parse_args(line.split("-m shared.deploy", 1)[1].split())
        assert (args.release_command, args.service, args.env) == (sub, "netra-auth", "staging")
