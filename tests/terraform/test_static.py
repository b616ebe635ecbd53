"""Terraform static checks that need no terraform binary and no network: every file parses, every module
documents its interface, environment roots are complete, and checkov passes (inline suppressions carry a
written reason)."""

from __future__ import annotations

import json
import re
import shutil
import subprocess

import pytest

from tests.terraform.hcl import PLATFORM_DIR, TERRAFORM_DIR, load, module, module_dirs, tf_files

ENVIRONMENTS = ["staging", "prod"]


def test_every_tf_file_parses() -> None:
    files = tf_files()
    assert len(files) >= 20, "expected the platform, its modules and two environments"
    for path in files:
        load(path)  # raises on a syntax error


def test_every_variable_and_output_is_documented_and_typed() -> None:
    problems = []
    for directory in module_dirs():
        blocks = module(directory)
        rel = directory.relative_to(TERRAFORM_DIR)
        for name, body in blocks["variable"].items():
            if not body.get("description"):
                problems.append(f"{rel}: variable {name} has no description")
            if "type" not in body:
                problems.append(f"{rel}: variable {name} has no type")
        for name, body in blocks["output"].items():
            if not body.get("description"):
                problems.append(f"{rel}: output {name} has no description")
    assert not problems, "\n".join(problems)


def test_every_module_pins_terraform_and_providers() -> None:
    for directory in module_dirs():
        terraform_blocks = [b for p in directory.glob("*.tf") for b in load(p).get("terraform", [])]
        assert terraform_blocks, f"{directory}: no terraform block"
        assert any("required_version" in b for b in terraform_blocks), f"{directory}: no required_version"


@pytest.mark.parametrize("env", ENVIRONMENTS)
def test_environment_root_has_backend_tfvars_example_and_uses_the_platform(env: str) -> None:
    root = TERRAFORM_DIR / "environments" / env
    blocks = module(root)
    terraform = [b for p in root.glob("*.tf") for b in load(p).get("terraform", [])]
    assert any("gcs" in b.get("backend", [{}])[0] for b in terraform if b.get("backend")), "state must be in GCS"
    assert (root / "backend.hcl.example").is_file() and (root / "terraform.tfvars.example").is_file()
    assert blocks["module"]["netra"]["source"] == "../../modules/platform"
    # Every required input of the platform is passed by the root.
    platform_vars = module(PLATFORM_DIR)["variable"]
    required = {name for name, body in platform_vars.items() if "default" not in body}
    missing = required - set(blocks["module"]["netra"])
    assert not missing, f"{env} does not set {sorted(missing)}"
    # The tfvars example sets only variables the root declares, and every one without a default.
    example = (root / "terraform.tfvars.example").read_text()
    set_names = {
        line.split("=")[0].strip()
        for line in example.splitlines()
        if "=" in line and not line.startswith((" ", "#", "}"))
    }
    unknown = set_names - set(blocks["variable"])
    assert not unknown, f"{env}/terraform.tfvars.example sets undeclared {sorted(unknown)}"
    required_root = {n for n, b in blocks["variable"].items() if "default" not in b}
    assert required_root <= set_names, f"example misses {sorted(required_root - set_names)}"


def test_production_protects_data_and_staging_does_not() -> None:
    prod = module(TERRAFORM_DIR / "environments" / "prod")["module"]["netra"]
    staging = module(TERRAFORM_DIR / "environments" / "staging")["module"]["netra"]
    assert prod["deletion_protection"] is True and staging["deletion_protection"] is False
    assert prod["environment"] == "production" and staging["environment"] == "staging"
    assert prod["release_on_apply"] is True and staging["release_on_apply"] is True  # canary in both
    assert staging["hostname_suffix"] == "staging.${var.domain}"
    sql = module(PLATFORM_DIR)["resource"]["google_sql_database_instance"]["main"]
    assert sql["deletion_protection"] == "${var.deletion_protection}"
    backup = sql["settings"][0]["backup_configuration"][0]
    assert backup["enabled"] is True and backup["point_in_time_recovery_enabled"] is True
    flags = {f["name"]: f["value"] for f in sql["settings"][0]["database_flags"]}
    assert flags["cloudsql.iam_authentication"] == "on"
    assert sql["settings"][0]["ip_configuration"][0]["ipv4_enabled"] is False


def test_no_secret_value_is_written_to_state() -> None:
    """Secret versions and database passwords only through write-only arguments (Terraform 1.11)."""
    blocks = module(PLATFORM_DIR)["resource"]
    for name, body in blocks.get("google_secret_manager_secret_version", {}).items():
        assert "secret_data" not in body, f"secret version {name} would store its value in state"
        assert "secret_data_wo" in body
    for name, body in blocks.get("google_sql_user", {}).items():
        assert "password" not in body, f"sql user {name} would store its password in state"
    text = "\n".join(p.read_text() for p in tf_files())
    assert 'random_password" "' not in text.replace('ephemeral "random_password" "', ""), (
        "a non-ephemeral random_password keeps its value in state"
    )


def test_ws_bridge_service_is_configured_for_websockets() -> None:
    svc = module(PLATFORM_DIR)["resource"]["google_cloud_run_v2_service"]["ws_bridge"]
    template = svc["template"][0]
    assert template["timeout"] == "3600s"
    assert template["session_affinity"] is True
    assert template["max_instance_request_concurrency"] == "${var.ws_concurrency}"
    container = template["containers"][0]
    assert container["resources"][0]["startup_cpu_boost"] is True
    assert container["startup_probe"][0]["http_get"][0]["path"] == "/health/ready"
    assert template["scaling"][0]["min_instance_count"] == "${var.min_instances.ws_bridge}"
    # Cloud Run routes to the container's port on every interface; the local default is 127.0.0.1.
    command = module(PLATFORM_DIR)["locals"]["containers"]["ws-bridge"]
    assert command[command.index("--host") + 1] == "0.0.0.0"
    assert container["command"] == '${local.containers["ws-bridge"]}'
    assert container["ports"][0]["container_port"] == 8080


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed (optional check)")
def test_terraform_fmt() -> None:
    result = subprocess.run(
        ["terraform", "fmt", "-recursive", "-check", "-diff"],
        cwd=TERRAFORM_DIR,
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert result.returncode == 0, result.stdout + result.stderr


@pytest.mark.timeout(1200)  # on a fresh clone the fixture waits for checkov's install (background, see conftest)
def test_checkov_passes_with_reasoned_suppressions(checkov_scan: subprocess.CompletedProcess[str]) -> None:
    """checkov -d terraform --framework terraform, run in the background from the session's start (conftest)."""
    result = checkov_scan
    assert result.stdout.strip(), f"checkov printed nothing: {result.stderr[-2000:]}"
    report = json.loads(result.stdout)
    reports = report if isinstance(report, list) else [report]
    summary = reports[0]["summary"]
    print(f"checkov: {summary}")
    failed = [
        f"{c['check_id']} {c['resource']} ({c['file_path']}): {c['check_name']}"
        for r in reports
        for c in r["results"]["failed_checks"]
    ]
    assert not failed, "checkov failed checks:\n" + "\n".join(failed)
    assert summary["parsing_errors"] == 0
    assert summary["passed"] >= 50 and summary["resource_count"] >= 80, "checkov scanned too little to mean much"
    for r in reports:
        for c in r["results"]["skipped_checks"]:
            reason = (c["check_result"].get("suppress_comment") or "").strip()
            assert len(reason) >= 30, f"suppression of {c['check_id']} on {c['resource']} needs a written reason"
    assert result.returncode == 0


def test_every_google_resource_uses_only_attributes_of_the_pinned_provider() -> None:
    """What `terraform validate` would say about names, without the provider binary (see provider_schema);
    time_sleep (hashicorp/time) is checked the same way."""
    from tests.terraform.provider_schema import PROVIDER_VERSION, TIME_PROVIDER_VERSION, unknown_attributes

    problems, checked = [], 0
    for path in tf_files():
        for block in load(path).get("resource", []):
            for rtype, named in block.items():
                if not rtype.startswith(("google_", "time_")):
                    continue
                for name, body in named.items():
                    checked += 1
                    problems += [
                        f"{path.relative_to(TERRAFORM_DIR)}: {p} ({name})" for p in unknown_attributes(rtype, body)
                    ]
    assert checked >= 60
    assert not problems, f"not in google {PROVIDER_VERSION} or time {TIME_PROVIDER_VERSION}:\n" + "\n".join(problems)
    versions = {
        b["required_providers"][0]["google"]["version"]
        for p in tf_files()
        for b in load(p).get("terraform", [])
        if "google" in b.get("required_providers", [{}])[0]
    }
    assert versions == {"~> 6.50"}, f"the schema checked is {PROVIDER_VERSION}; pin google to it: {versions}"
    time_versions = {
        b["required_providers"][0]["time"]["version"]
        for p in tf_files()
        for b in load(p).get("terraform", [])
        if "time" in b.get("required_providers", [{}])[0]
    }
    assert time_versions == {"~> 0.13"}, f"the time schema checked is {TIME_PROVIDER_VERSION}: {time_versions}"


def test_migration_job_runs_on_every_apply_before_new_revisions() -> None:
    """The migration job is executed (and waited for) on each apply, and every function and the ws_bridge service
    are created or updated only after it: no new revision takes traffic against an older schema."""
    platform = module(PLATFORM_DIR)
    migrations = platform["resource"]["terraform_data"]["migrations"]
    assert "${plantimestamp()}" in migrations["triggers_replace"], "must run on every apply, not only on code changes"
    command = migrations["provisioner"][0]["local-exec"]["command"]
    assert "gcloud run jobs execute" in command and "--wait" in command
    assert 'google_cloud_run_v2_job.job["migrate"].name' in command
    assert "${terraform_data.migrations}" in platform["module"]["function"]["depends_on"]
    ws_bridge = platform["resource"]["google_cloud_run_v2_service"]["ws_bridge"]
    assert "${terraform_data.migrations}" in ws_bridge["depends_on"]
    migrate = platform["locals"]["containers"]["migrate"]
    assert "python -m shared.db.migrate" in " ".join(migrate)


def test_alerts_cover_the_issue_and_read_log_lines_the_code_writes() -> None:
    """5xx rate, cold-start latency, dead-letter depth and Cloud SQL connection errors each have an alert, and the
    log-based metrics match what the code logs (the startup manager's line, the database component's name)."""
    platform = module(PLATFORM_DIR)
    assert set(platform["resource"]["google_monitoring_alert_policy"]) == {
        "http_5xx",
        "cold_start",
        "dead_letters",
        "db_connection_errors",
        "release_rolled_back",  # canary releases: tests/terraform/test_delivery.py
    }
    metrics = platform["resource"]["google_logging_metric"]
    startup_source = (TERRAFORM_DIR.parent / "shared" / "startup.py").read_text()
    assert re.search(r'log\.info\(\s*"startup complete",\s*extra=\{"startup_ms"', startup_source), "the line moved"
    assert "startup complete" in metrics["startup_ms"]["filter"]
    assert metrics["startup_ms"]["value_extractor"] == "EXTRACT(jsonPayload.startup_ms)"
    assert re.search(r'Component\(\s*"database"', (TERRAFORM_DIR.parent / "shared" / "service.py").read_text())
    assert 'jsonPayload.component=\\"database\\"' in metrics["db_connection_errors"]["filter"]
    assert "httpRequest.status>=500" in metrics["http_5xx"]["filter"]
    # The dead-letter alert watches the *-dlq-pull subscriptions: one per dead-letter topic.
    topology = json.loads((TERRAFORM_DIR.parent / "shared" / "pubsub_topology.json").read_text())
    dead_letter_topics = {t["dead_letter_topic"] for t in topology["topics"].values() if t.get("dead_letter_topic")}
    pulls = {s["topic"] for name, s in topology["subscriptions"].items() if name.endswith("-dlq-pull")}
    assert dead_letter_topics and pulls == dead_letter_topics
    dlq_filter = platform["resource"]["google_monitoring_alert_policy"]["dead_letters"]["conditions"][0][
        "condition_threshold"
    ][0]["filter"]
    assert 'ends_with("-dlq-pull")' in dlq_filter


def test_warmup_pings_health_ready_with_an_oidc_token() -> None:
    job = module(PLATFORM_DIR)["resource"]["google_cloud_scheduler_job"]["warmup"]
    target = job["http_target"][0]
    assert target["uri"] == "${each.value}/health/ready" and target["http_method"] == "GET"
    assert target["oidc_token"][0]["audience"] == "${each.value}"
