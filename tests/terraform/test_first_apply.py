"""A first `terraform apply` on an empty project: creation order against what each step needs (issue 21).

Nobody here can run an apply (no network to Google), so the order is checked the way Terraform computes it: the
dependency graph of the platform module (tests/terraform/graph.py). Where the creation of a resource waits for
something to *work*, not just to exist, that something must be created before it, must not depend on it, and
IAM grants among it must have had time to take effect:

- the ws_bridge service: Cloud Run creates a revision only once its startup probe (/health/ready) passes, i.e.
  once the service's critical startup components (declared in the code) are up;
- the migration run (`gcloud run jobs execute --wait`): the job logs in and grants;
- the builds (functions, the app image): the build account reads the sources and pushes images;
- the functions and jobs: Cloud Run refuses a revision whose account cannot read a secret it references.

A Cloud Function's creation waits only for its port (no startup probe on /health/ready): its critical components
are not creation needs, and this module checks that no startup probe was added to them silently.
"""

from __future__ import annotations

import ast
import re
from pathlib import Path

import pytest

from shared.config import REPO_ROOT
from tests.terraform.graph import Graph, expressions, platform_graph
from tests.terraform.hcl import PLATFORM_DIR, TERRAFORM_DIR, load, module, tf_files

DEPLOY = (REPO_ROOT / "docs" / "DEPLOY.md").read_text()
WS_BRIDGE = "google_cloud_run_v2_service.ws_bridge"

# Where each workload declares its startup components.
COMPONENT_FILES = {
    "ws-bridge": ["functions/ws_bridge/app.py"],
    "auth": ["functions/auth/app.py"],
    "agent-api": ["functions/agent/components.py"],
    "agent-worker": ["functions/agent/components.py"],
}

# What a critical component needs at start, in Terraform terms: resources (addresses), and "env:NAME" for an
# endpoint taken from the workload's environment (settings.tf), whose references are followed. A public URL
# (local.hosts / local.urls) needs what makes the host resolve and serve TLS: the load balancer and the DNS
# records. Every critical component in the code must be classified here: an unknown one fails the test.
COMPONENT_NEEDS: dict[str, list[str]] = {
    "database": [
        "google_sql_database_instance.main",
        "google_sql_database.netra",
        "google_sql_user.iam",
        "google_vpc_access_connector.serverless",
        "google_project_iam_member.sql_client",
        "google_project_iam_member.sql_instance_user",
    ],
    "schema": ["terraform_data.migrations"],
    # The verifiers' key set (agent API, ws_bridge): auth's public keys, from its JWKS URL.
    "keyset": ["env:AUTH_JWKS_URL"],
    "agent_events": [
        "google_pubsub_topic.topic",
        "google_project_iam_member.ws_bridge_subscriptions",
        "google_pubsub_topic_iam_member.ws_bridge_attach",
    ],
    "firestore": ["google_firestore_database.main", "google_project_iam_member.firestore_user"],
}
# Where one workload's component of that name needs something else: auth's key set is its signing keys.
WORKLOAD_COMPONENT_NEEDS: dict[tuple[str, str], list[str]] = {
    ("auth", "keyset"): ["env:TOKEN_KEYSET_SECRET", "google_secret_manager_secret_iam_member.accessor"],
}
PUBLIC_HOST_LOCALS = {"hosts", "urls"}
PUBLIC_HOST_NEEDS = ["module.lb", "google_dns_record_set.hosts"]

# Creations that wait for something to work: node => (what, needs).
MIGRATION_NEEDS = [
    "google_cloud_run_v2_job.job",
    "google_sql_user.migrator",
    "google_sql_user.iam",  # grant-db grants to them
    "google_sql_database.netra",
    "google_secret_manager_secret_version.db_migrator_password",
    "google_secret_manager_secret_iam_member.accessor",
    "google_project_iam_member.sql_client",
    "google_vpc_access_connector.serverless",
]
SECRET_ACCESS = "google_secret_manager_secret_iam_member.accessor"
BUILD_NEEDS = [
    "google_project_iam_member.build",
    "google_project_iam_member.build_gcf_sources",
    "google_storage_bucket_iam_member.build_sources",
    "google_artifact_registry_repository_iam_member.build_writer",
]


def _priority(call: ast.Call) -> str | None:
    """The Priority given to a Component(...) call; CRITICAL if any branch of a conditional says so."""
    for arg in [*call.args[1:], *(k.value for k in call.keywords if k.arg == "priority")]:
        names = [
            n.attr
            for n in ast.walk(arg)
            if isinstance(n, ast.Attribute) and isinstance(n.value, ast.Name) and n.value.id == "Priority"
        ]
        if names:
            return "CRITICAL" if "CRITICAL" in names else names[0]
    return None


def _components_in(path: Path) -> dict[str, str]:
    """Component name => priority for every Component("literal", ..., Priority.X) in ``path``, plus those of
    shared.service.database_components when the file calls it."""
    found: dict[str, str] = {}
    tree = ast.parse(path.read_text())
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = node.func.id if isinstance(node.func, ast.Name) else getattr(node.func, "attr", "")
        if name == "Component" and node.args and isinstance(node.args[0], ast.Constant):
            priority = _priority(node)
            assert priority, f"{path}: component {node.args[0].value} without a literal Priority"
            found[str(node.args[0].value)] = priority
        elif name == "database_components" and path != REPO_ROOT / "shared" / "service.py":
            found.update(_components_in(REPO_ROOT / "shared" / "service.py"))
    return found


def critical_components(workload: str) -> list[str]:
    found: dict[str, str] = {}
    for rel in COMPONENT_FILES[workload]:
        found.update(_components_in(REPO_ROOT / rel))
    return sorted(name for name, priority in found.items() if priority == "CRITICAL")


def component_needs(graph: Graph, workload: str, component: str) -> dict[str, str]:
    """Node => why, for one component of one workload."""
    needs: dict[str, str] = {}
    for need in WORKLOAD_COMPONENT_NEEDS.get((workload, component)) or COMPONENT_NEEDS[component]:
        if not need.startswith("env:"):
            needs[need] = f"{workload}'s startup component {component}"
            continue
        var = need[4:]
        value = graph.locals_["service_env"][workload].get(var)
        assert value, f"{workload} has no {var} in settings.tf, yet its component {component} reads it"
        why = f"{workload}'s startup component {component} (reads {var} = {value})"
        for node in graph.resolve(value):
            needs[node] = why
        if graph.locals_referenced(value) & PUBLIC_HOST_LOCALS:
            for node in PUBLIC_HOST_NEEDS:
                needs[node] = why + ": a public host, served once the load balancer and DNS exist"
    return needs


def _probe_paths(body: dict) -> list[str]:
    return [
        get["path"]
        for container in body["template"][0]["containers"]
        for probe in container.get("startup_probe", [])
        for get in probe.get("http_get", [])
    ]


def gated_creations(graph: Graph) -> dict[str, dict[str, str]]:
    """Node => {need => why} for every creation that waits for something to work."""
    gated: dict[str, dict[str, str]] = {}
    for node in graph.of_type("google_cloud_run_v2_service"):
        body = graph.bodies[node]
        if "/health/ready" not in _probe_paths(body):
            continue
        account = re.search(r'google_service_account\.workload\["([^"]+)"\]', body["template"][0]["service_account"])
        assert account, f"{node}: cannot tell which workload it runs"
        workload = account.group(1)
        needs: dict[str, str] = {}
        for component in critical_components(workload):
            needs.update(component_needs(graph, workload, component))
        gated[node] = needs
    migration = "the migration job (login as the migrator, grant-db)"
    gated["terraform_data.migrations"] = {n: migration for n in MIGRATION_NEEDS}
    gated["module.function"] = {n: "the functions' builds" for n in BUILD_NEEDS}
    # Cloud Run refuses a revision (function or job) whose runtime account cannot read a secret it references.
    for node in ("module.function", "google_cloud_run_v2_job.job"):
        gated.setdefault(node, {})[SECRET_ACCESS] = "the secrets its revisions reference"
    gated["terraform_data.app_image"] = {n: "the app image's build" for n in BUILD_NEEDS}
    return gated


def _duration_s(text: str) -> float:
    match = re.fullmatch(r"(\d+)(s|m|h)", text)
    assert match, f"unexpected duration {text!r}"
    return int(match.group(1)) * {"s": 1, "m": 60, "h": 3600}[match.group(2)]


def waits_between(graph: Graph, first: str, then: str, at_least_s: float) -> bool:
    """A time_sleep of at least ``at_least_s`` lies on a dependency path from ``then`` back to ``first``."""
    for sleep in graph.of_type("time_sleep"):
        duration = _duration_s(graph.bodies[sleep]["create_duration"])
        if duration >= at_least_s and first in graph.ancestors(sleep) and sleep in graph.ancestors(then):
            return True
    return False


def test_every_critical_component_in_the_code_is_classified() -> None:
    """A new critical component must say what it needs, or the order below could not be checked."""
    for workload in COMPONENT_FILES:
        components = critical_components(workload)
        assert components, f"found no critical component of {workload}: did the code move?"
        unknown = [c for c in components if c not in COMPONENT_NEEDS]
        assert not unknown, f"{workload}: classify {unknown} in COMPONENT_NEEDS (what each needs at start)"
    assert {"database", "schema", "agent_events"} <= set(critical_components("ws-bridge"))


def test_the_module_graph_has_no_cycle() -> None:
    assert not platform_graph().cycles()


def test_no_creation_waits_on_something_created_after_it() -> None:
    """Issue 21 item 1 and the general rule: for each creation that waits for its needs to work (ws_bridge's
    startup probe, the migration run, the builds), every need is created before it; a need that depends on the
    creation itself is a cycle (e.g. a startup component reading auth's public host, whose load balancer has the
    bridge as a backend: the apply never finishes). IAM grants among the needs must also have had time to take
    effect (a wait after them, before the creation)."""
    graph = platform_graph()
    gated = gated_creations(graph)
    assert WS_BRIDGE in gated, "the ws_bridge service lost its /health/ready startup probe"
    problems = []
    for node, needs in gated.items():
        before = graph.ancestors(node)
        for need, why in sorted(needs.items()):
            assert need in graph.bodies, f"{need} ({why}) is not in the platform module"
            if need in before:
                if need.split(".")[0].endswith("_iam_member") and not waits_between(graph, need, node, 60):
                    problems.append(f"{node} waits for {need} ({why}) but not for the grant to take effect")
                continue
            cycle = graph.path(need, node)
            if cycle:
                problems.append(f"cycle: {node} needs {need} for {why}, and {' -> '.join(cycle)}")
            else:
                problems.append(f"{node} needs {need} for {why}, but may be created before it")
    assert not problems, "\n".join(problems)


def test_functions_do_not_gate_their_creation_on_startup_components() -> None:
    """Why the functions' critical components (agent-api's token verifier reads auth's public host) are not
    creation needs: the function module sets no startup probe, so a revision is ready once its port listens."""
    body = module(TERRAFORM_DIR / "modules" / "cloud_function")["resource"]["google_cloudfunctions2_function"]["this"]
    assert "startup_probe" not in str(body), "a startup probe makes the functions' critical components gate the apply"


def test_every_google_resource_waits_for_api_enablement() -> None:
    """Item 4: nothing calls an API in the seconds after it was enabled (provider issues 3151, 11023); the custom
    role in particular needs the IAM API, which a new project does not have."""
    graph = platform_graph()
    body = graph.bodies["time_sleep.apis"]
    assert _duration_s(body["create_duration"]) >= 60
    assert graph.deps["time_sleep.apis"] == {"google_project_service.api"}
    exempt = {
        "google_project_service.api": "enables them",
        "time_sleep.apis": "the wait itself",
        "data.google_project.this": "Resource Manager API, enabled in DEPLOY step 0 (read at plan time)",
    }
    missing = [
        node
        for node in graph.bodies
        if node not in exempt
        and node.startswith(("google_", "module.", "terraform_data.", "data.google_"))
        and "time_sleep.apis" not in graph.ancestors(node)
    ]
    assert not missing, f"created without waiting for API enablement: {missing}"
    assert "time_sleep.apis" in graph.ancestors("google_project_iam_custom_role.ws_bridge_subscriptions")


API_OF_TYPE = {
    "google_sql_": "sqladmin.googleapis.com",
    "google_compute_": "compute.googleapis.com",
    "google_cloud_run_": "run.googleapis.com",
    "google_cloudfunctions2_": "cloudfunctions.googleapis.com",
    "google_pubsub_": "pubsub.googleapis.com",
    "google_secret_manager_": "secretmanager.googleapis.com",
    "google_artifact_registry_": "artifactregistry.googleapis.com",
    "google_vpc_access_": "vpcaccess.googleapis.com",
    "google_service_networking_": "servicenetworking.googleapis.com",
    "google_monitoring_": "monitoring.googleapis.com",
    "google_logging_": "logging.googleapis.com",
    "google_cloud_scheduler_": "cloudscheduler.googleapis.com",
    "google_firestore_": "firestore.googleapis.com",
    "google_storage_": "storage.googleapis.com",
    "google_dns_": "dns.googleapis.com",
    "google_service_account": "iam.googleapis.com",
    "google_project_iam_custom_role": "iam.googleapis.com",
}


def test_every_api_the_resources_call_is_enabled() -> None:
    apis = set(re.findall(r'"([a-z]+\.googleapis\.com)"', (PLATFORM_DIR / "apis.tf").read_text()))
    types = {t for p in tf_files() for block in load(p).get("resource", []) for t in block}
    missing = {api for prefix, api in API_OF_TYPE.items() for t in types if t.startswith(prefix)} - apis
    assert not missing, f"resources call APIs that apis.tf does not enable: {sorted(missing)}"


def _cel_startswith_covers(expression: str, resource_name: str) -> bool:
    """Evaluates the conditions used here: ORs/ANDs of resource.name.startsWith("...") / == "..."."""
    ors = [part.strip() for part in expression.split("||")]
    for clause in ors:
        ok = True
        for term in (t.strip() for t in clause.split("&&")):
            starts = re.fullmatch(r'resource\.name\.startsWith\("([^"]*)"\)', term)
            equals = re.fullmatch(r'resource\.name == "([^"]*)"', term)
            if starts:
                ok = ok and resource_name.startswith(starts.group(1))
            elif equals:
                ok = ok and resource_name == equals.group(1)
            else:
                raise AssertionError(f"cannot evaluate the condition term {term!r}")
        if ok:
            return True
    return False


def test_build_account_can_read_the_gen2_sources_bucket_once_the_grant_is_in_effect() -> None:
    """Item 2: Cloud Functions gen2 builds from its own gcf-v2-sources-<number>-<region> bucket; the build account
    gets read on it (bucket and objects), on nothing else, and the builds wait for the grant to take effect."""
    graph = platform_graph()
    number, region = "123456789012", "europe-west1"
    bucket = f"projects/_/buckets/gcf-v2-sources-{number}-{region}"
    covering = []
    for node in graph.of_type("google_project_iam_member"):
        body = graph.bodies[node]
        if body["member"] != "serviceAccount:${google_service_account.build.email}":
            continue
        if body["role"] not in ("roles/storage.objectViewer", "roles/storage.objectAdmin"):
            continue
        expression = body["condition"][0]["expression"]
        bucket_expr = graph.locals_["gcf_sources_bucket"]
        rendered = (
            expression.replace("${local.gcf_sources_bucket}", bucket_expr)
            .replace("${data.google_project.this.number}", number)
            .replace("${var.region}", region)
        )
        assert "${" not in rendered, f"{node}: unexpected expression in {rendered}"
        if _cel_startswith_covers(rendered, bucket) and _cel_startswith_covers(rendered, bucket + "/objects/a.zip"):
            assert not _cel_startswith_covers(rendered, "projects/_/buckets/other-bucket"), f"{node}: unconditioned"
            covering.append(node)
    assert covering, "no grant lets the build account read gcf-v2-sources-<number>-<region>"
    for node in covering:
        assert waits_between(graph, node, "module.function", 60), f"the function builds do not wait for {node}"


def test_alert_policies_wait_for_their_log_based_metrics() -> None:
    """Item 3: Monitoring knows a new log-based metric only up to ten minutes after its creation, and the provider
    does not retry "Cannot find metric(s)" (issue 11102): every policy on one waits at least that long."""
    graph = platform_graph()
    checked = 0
    for node in graph.of_type("google_monitoring_alert_policy"):
        for metric in sorted(n for n in graph.deps[node] if n.startswith("google_logging_metric.")):
            checked += 1
            assert waits_between(graph, metric, node, 600), f"{node} does not wait 10 minutes after {metric}"
    assert checked >= 3


def test_pubsub_service_agent_exists_before_any_binding_names_it() -> None:
    """Item 5: the Pub/Sub service agent may not exist on a new project; it is created first, and every binding
    that names it takes the member from the resource that creates it (so it cannot be created before)."""
    graph = platform_graph()
    creator = "terraform_data.pubsub_service_agent"
    command = graph.bodies[creator]["provisioner"][0]["local-exec"]["command"]
    assert "services identity create --service=pubsub.googleapis.com" in command
    naming = [
        node
        for node, body in graph.bodies.items()
        if "gcp-sa-pubsub" in str(body.get("member", ""))
        or "local.pubsub_agent" in str(body.get("member", ""))
        or "pubsub_service_agent" in str(body.get("member", ""))
    ]
    assert len(naming) >= 3, naming  # token creator, dead-letter publisher and subscriber
    for node in naming:
        assert creator in graph.ancestors(node), f"{node} names the Pub/Sub service agent before it is created"


def test_migrator_password_is_written_to_the_user_then_to_the_secret() -> None:
    """Item 6: both take the ephemeral password of the same run; the secret version is written right after the
    user (not ten minutes before it, while Cloud SQL is created), and both move together with the version."""
    graph = platform_graph()
    user = graph.bodies["google_sql_user.migrator"]
    version = graph.bodies["google_secret_manager_secret_version.db_migrator_password"]
    assert user["password_wo"] == version["secret_data_wo"] == "${ephemeral.random_password.db_migrator.result}"
    assert user["password_wo_version"] == version["secret_data_wo_version"] == "${var.db_password_version}"
    assert "google_sql_user.migrator" in graph.ancestors("google_secret_manager_secret_version.db_migrator_password")
    assert "db_password_version" in DEPLOY and "password authentication failed" in DEPLOY
    for env in ("staging", "prod"):  # the repair DEPLOY.md gives is a terraform.tfvars setting of the root
        root = module(TERRAFORM_DIR / "environments" / env)
        assert "db_password_version" in root["variable"], f"{env}: terraform.tfvars cannot set db_password_version"
        assert root["module"]["netra"].get("db_password_version") == "${var.db_password_version}"


def test_destroy_can_finish() -> None:
    """Item 7: PostgreSQL users that own objects or hold grants are abandoned (the instance's deletion removes
    them), the service networking connection is abandoned and its peering removed after the instance and before
    the network (a destroy provisioner, which may only read self)."""
    graph = platform_graph()
    for node in graph.of_type("google_sql_user"):
        assert graph.bodies[node].get("deletion_policy") == "ABANDON", f"{node}: DROP ROLE fails on owned objects"
    database = graph.bodies["google_sql_database.netra"]
    assert database.get("deletion_policy") == "ABANDON", "DROP DATABASE fails while a connection lingers"
    connection = graph.bodies["google_service_networking_connection.private_services"]
    assert connection.get("deletion_policy") == "ABANDON", "Service Networking refuses while Cloud SQL holds it"
    assert connection.get("update_on_creation_fail") is True, "a new apply must update the abandoned connection"
    cleanup = "terraform_data.private_services_peering"
    provisioner = graph.bodies[cleanup]["provisioner"][0]["local-exec"]
    assert provisioner["when"] == "destroy"
    assert "networks peerings delete servicenetworking-googleapis-com" in provisioner["command"]
    refs = {m for expr in expressions(provisioner["command"]) for m in re.findall(r"\b(\w+)\.", expr)}
    assert refs <= {"self", "output"}, f"a destroy provisioner may only reference self: {refs}"
    assert "google_compute_network.vpc" in graph.deps[cleanup]  # destroyed before the network
    assert cleanup in graph.ancestors("google_sql_database_instance.main")  # destroyed after the instance


def test_public_services_need_no_allusers_binding_where_run_can_disable_the_check() -> None:
    """Item 8: `allUsers` is refused in organizations with domain-restricted sharing. Cloud Run services disable
    the invoker check instead; what still needs allUsers (gen2 functions have no such setting, the web bucket) is
    listed under Prerequisites with the organization policy to relax."""
    graph = platform_graph()
    for node in graph.of_type("google_cloud_run_v2_service_iam_member"):
        assert graph.bodies[node]["member"] != "allUsers", f"{node}: use invoker_iam_disabled"
    assert graph.bodies[WS_BRIDGE]["invoker_iam_disabled"] is True
    public = [n for n, body in graph.bodies.items() if body.get("member") == "allUsers"]
    prerequisites = DEPLOY.split("## 0. Prerequisites", 1)[1].split("\n## ", 1)[0]
    assert "iam.allowedPolicyMemberDomains" in prerequisites
    for node in public:
        assert f"`{node}`" in prerequisites, f"{node} binds allUsers: list it under Prerequisites"


def test_deploy_step_0_sets_the_project_before_application_default_credentials() -> None:
    """Item 9: ADC takes its quota project from the gcloud project set at login time."""
    step0 = DEPLOY.split("## 0. Prerequisites", 1)[1].split("\n## ", 1)[0]
    commands = [line.strip() for line in step0.splitlines() if line.strip().startswith("gcloud ")]
    index = {c.split(" ")[1] + " " + c.split(" ")[2]: i for i, c in reversed(list(enumerate(commands)))}
    assert index["config set"] < index["auth application-default"], commands
    assert any("set-quota-project" in c for c in commands)
    assert any("services identity create --service=pubsub.googleapis.com" in c for c in commands)
    assert "us-central1" in step0  # the regions that still take default-pool builds on restricted projects


def test_every_address_in_deploy_md_exists() -> None:
    """The recovery and teardown commands in DEPLOY.md (-replace, -target, state rm, import) name real resources."""
    graph = platform_graph()
    addresses = set(re.findall(r"module\.netra\.([a-z0-9_.]+?)(?=[\[\s\"'`]|$)", DEPLOY, re.M))
    assert addresses, "expected DEPLOY.md to name resources"
    unknown = sorted(a for a in addresses if a not in graph.bodies)
    assert not unknown, f"DEPLOY.md names resources that do not exist: {unknown}"


@pytest.mark.parametrize("directory", ["modules/platform", "environments/staging", "environments/prod"])
def test_time_provider_is_required_where_time_sleep_is_used(directory: str) -> None:
    root = TERRAFORM_DIR / directory
    blocks = [b for p in root.glob("*.tf") for b in load(p).get("terraform", [])]
    providers = {k: v for b in blocks for rp in b.get("required_providers", []) for k, v in rp.items()}
    assert providers.get("time", {}).get("source") == "hashicorp/time", f"{directory}: hashicorp/time not required"
