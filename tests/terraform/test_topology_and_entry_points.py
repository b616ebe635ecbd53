"""Every topic, subscription and entry point Terraform names exists in the code, and the reverse.

Topics and subscriptions: Terraform reads shared/pubsub_topology.json itself (one definition); every
literal name Terraform uses must be in that file, every push target must be deployed, and every name the
code passes to topic_path()/subscription_path() must be in the file too. Entry points: every function
target and container command Terraform deploys exists in the code, every functions-framework function the
code defines is deployed, and the archive Terraform builds for a function holds everything it imports.
"""

from __future__ import annotations

import ast
import json
import re
import shutil
import subprocess
from pathlib import Path

import pytest

from shared import pubsub_topology
from shared.config import REPO_ROOT
from shared.pubsub_topology import AGENT_EVENTS, AGENT_REQUESTS, WORKER_SUBSCRIPTION, topology
from tests.terraform.hcl import TERRAFORM_DIR, import_closure, module_file, platform, tf_files

TOPOLOGY = json.loads((REPO_ROOT / "shared" / "pubsub_topology.json").read_text())


def _tf_text() -> str:
    return "\n".join(p.read_text() for p in tf_files())


def test_terraform_reads_the_topology_file_the_code_reads() -> None:
    locals_ = platform()["locals"]
    assert locals_["topology"] == '${jsondecode(file("${local.repo_root}/shared/pubsub_topology.json"))}'
    assert locals_["repo_root"] == '${abspath("${path.module}/../../..")}'
    assert (TERRAFORM_DIR / "modules" / "platform" / "../../..").resolve() == REPO_ROOT
    resources = platform()["resource"]
    assert resources["google_pubsub_topic"]["topic"]["for_each"] == "${local.topology.topics}"
    assert resources["google_pubsub_subscription"]["subscription"]["for_each"] == "${local.topology.subscriptions}"
    # No other topic or subscription resources with hard-coded names.
    assert list(resources["google_pubsub_topic"]) == ["topic"]
    assert list(resources["google_pubsub_subscription"]) == ["subscription"]
    assert topology() == TOPOLOGY


def test_every_name_terraform_uses_is_in_the_topology() -> None:
    text = _tf_text()
    topics = set(TOPOLOGY["topics"])
    used_topics = set(re.findall(r'google_pubsub_topic\.topic\["([^"]+)"\]', text))
    for cfg in platform()["locals"]["workloads"].values():
        used_topics.update(cfg["publishes"])
    assert used_topics, "expected Terraform to reference topics"
    assert used_topics <= topics, f"unknown topics in Terraform: {sorted(used_topics - topics)}"
    used_subs = set(re.findall(r'google_pubsub_subscription\.subscription\["([^"]+)"\]', text))
    assert used_subs <= set(TOPOLOGY["subscriptions"])


def test_topology_is_consistent_and_every_push_target_is_deployed() -> None:
    topics = TOPOLOGY["topics"]
    for name, cfg in topics.items():
        if "dead_letter_topic" in cfg:
            assert cfg["dead_letter_topic"] in topics, f"{name}: dead-letter topic not declared"
    for name, cfg in TOPOLOGY["subscriptions"].items():
        assert cfg["topic"] in topics, f"subscription {name} on unknown topic {cfg['topic']}"
    for name, cfg in TOPOLOGY["per_instance_subscriptions"].items():
        assert cfg["topic"] in topics, f"per-instance subscription {name} on unknown topic"
    push_targets = {cfg["push_to"] for cfg in TOPOLOGY["subscriptions"].values() if "push_to" in cfg}
    endpoints = platform()["locals"]["push_endpoints"]
    assert push_targets == set(endpoints), "every push_to needs exactly one endpoint in pubsub.tf"
    for target, expr in endpoints.items():
        key = re.fullmatch(r'\$\{module\.function\["([^"]+)"\]\.uri\}', expr)
        assert key and key.group(1) in platform()["locals"]["functions"], f"{target} is not a deployed function"
    # The names the code relies on.
    assert {AGENT_REQUESTS, AGENT_EVENTS} <= set(topics)
    assert TOPOLOGY["subscriptions"][WORKER_SUBSCRIPTION]["topic"] == AGENT_REQUESTS
    assert TOPOLOGY["subscriptions"][WORKER_SUBSCRIPTION]["push_to"] == "agent-worker"
    assert platform()["locals"]["functions"]["agent-worker"]["signature_type"] == "cloudevent"


def _code_files() -> list[Path]:
    return sorted(
        p for d in ("functions", "shared") for p in (REPO_ROOT / d).rglob("*.py") if "__pycache__" not in p.parts
    )


def test_every_topic_or_subscription_the_code_names_is_in_the_topology() -> None:
    """Literal names and the constants of shared.pubsub_topology passed to topic_path()/subscription_path()."""
    constants = {k: v for k, v in vars(pubsub_topology).items() if k.isupper() and isinstance(v, str)}
    names: list[tuple[str, str, str]] = []
    for path in _code_files():
        for node in ast.walk(ast.parse(path.read_text())):
            if isinstance(node, ast.Call) and isinstance(node.func, ast.Name | ast.Attribute):
                func = node.func.id if isinstance(node.func, ast.Name) else node.func.attr
                if func not in ("topic_path", "subscription_path") or len(node.args) != 2:
                    continue
                arg = node.args[1]
                if isinstance(arg, ast.Constant) and isinstance(arg.value, str):
                    names.append((func, arg.value, str(path.relative_to(REPO_ROOT))))
                elif isinstance(arg, ast.Name | ast.Attribute):
                    ident = arg.id if isinstance(arg, ast.Name) else arg.attr
                    if ident in constants:
                        names.append((func, constants[ident], str(path.relative_to(REPO_ROOT))))
                elif isinstance(arg, ast.JoinedStr) and arg.values and isinstance(arg.values[0], ast.Constant):
                    # f"ws-bridge-{id}": a per-instance subscription, declared by its prefix.
                    names.append((func + "*", str(arg.values[0].value), str(path.relative_to(REPO_ROOT))))
    assert names, "expected the code to name topics through topic_path()"
    prefixes = [key.split("<", 1)[0] for key in TOPOLOGY["per_instance_subscriptions"]]
    for func, name, where in names:
        if func.endswith("*"):
            assert func == "subscription_path*" and name in prefixes, (
                f"{where} builds subscription names from {name!r}..., not a per_instance_subscriptions prefix"
            )
            continue
        pool = TOPOLOGY["topics"] if func == "topic_path" else TOPOLOGY["subscriptions"]
        assert name in pool, f"{where} uses {func}(..., {name!r}), which Terraform does not create"


def _defines(path: Path, name: str) -> ast.AST | None:
    for node in ast.parse(path.read_text()).body:
        if isinstance(node, ast.FunctionDef | ast.AsyncFunctionDef) and node.name == name:
            return node
        if isinstance(node, ast.Assign) and any(isinstance(t, ast.Name) and t.id == name for t in node.targets):
            return node
        if isinstance(node, ast.ImportFrom) and any((a.asname or a.name) == name for a in node.names):
            return node
    return None


def _framework_decorator(node: ast.AST) -> str | None:
    for dec in getattr(node, "decorator_list", []):
        target = dec.func if isinstance(dec, ast.Call) else dec
        name = target.attr if isinstance(target, ast.Attribute) else getattr(target, "id", "")
        if name in ("http", "cloud_event"):
            return "http" if name == "http" else "cloudevent"
    return None


@pytest.mark.parametrize("function", ["auth", "agent-api", "agent-worker"])
def test_deployed_function_entry_point_exists(function: str) -> None:
    spec = platform()["locals"]["functions"][function]
    path = module_file(spec["module"])
    assert path is not None, f"{spec['module']} (deployed as {function}) does not exist"
    assert path.parent == REPO_ROOT / spec["dir"], f"{spec['module']} is not inside {spec['dir']}"
    node = _defines(path, spec["entry_point"])
    assert node is not None, f"{path.relative_to(REPO_ROOT)} defines no {spec['entry_point']}"
    decorated = _framework_decorator(node)
    if decorated is not None:
        assert decorated == spec["signature_type"], (
            f"{function}: code says {decorated}, Terraform says {spec['signature_type']}"
        )


def test_every_framework_function_in_the_code_is_deployed() -> None:
    deployed = {(s["module"], s["entry_point"]) for s in platform()["locals"]["functions"].values()}
    for main in sorted((REPO_ROOT / "functions").glob("*/main.py")):
        dotted = ".".join(main.relative_to(REPO_ROOT).with_suffix("").parts)
        for node in ast.parse(main.read_text()).body:
            if _framework_decorator(node) is not None:
                assert (dotted, node.name) in deployed, f"{dotted}:{node.name} is a function Terraform never deploys"


@pytest.mark.parametrize("container", ["ws-bridge", "migrate", "rollup"])
def test_container_commands_run_existing_modules(container: str) -> None:
    command = " ".join(platform()["locals"]["containers"][container])
    modules = re.findall(r"-m ([\w.]+)", command)
    assert modules, f"{container}: command {command!r} runs no python -m module"
    for dotted in modules:
        path = module_file(dotted)
        assert path is not None, f"{container} runs python -m {dotted}, which does not exist"
        runnable = (
            path.name == "__init__.py" and (path.parent / "__main__.py").is_file() or "__main__" in path.read_text()
        )
        assert runnable, f"python -m {dotted} would do nothing: no __main__"
    if container == "migrate":
        assert "shared.db.migrate" in modules and modules.index("shared.db.migrate") == 0


def _archive_files(function: str) -> set[str]:
    """Python-side replica of modules/source_tree's file selection (cross-checked by terraform below)."""
    spec = platform()["locals"]["functions"][function]
    files = {"functions/__init__.py"}
    for d in (spec["dir"], "shared"):
        files |= {str(p.relative_to(REPO_ROOT)) for p in (REPO_ROOT / d).rglob("*.py") if "__pycache__" not in p.parts}
    return files


@pytest.mark.parametrize("function", ["auth", "agent-api", "agent-worker"])
def test_function_archive_holds_everything_its_entry_point_imports(function: str) -> None:
    spec = platform()["locals"]["functions"][function]
    assert module_file(spec["module"]) is not None, f"{spec['module']} does not exist"
    closure = import_closure([spec["module"]])
    outside = sorted(
        str(p.relative_to(REPO_ROOT)) for p in closure if str(p.relative_to(REPO_ROOT)) not in _archive_files(function)
    )
    assert not outside, f"{function} imports {outside}, which its archive ({spec['dir']} + shared/) lacks"


def test_generated_requirements_match_pyproject_dependencies() -> None:
    """Terraform's regex over pyproject.toml (modules/source_tree) relies on this layout."""
    import tomllib

    text = (REPO_ROOT / "pyproject.toml").read_text()
    deps = tomllib.loads(text)["project"]["dependencies"]
    block = re.search(r"(?s)\ndependencies = \[\n(.*?)\n\]", text)
    assert block, "pyproject.toml: keep `dependencies = [` and its closing `]` on their own lines"
    assert re.findall(r'"([^"]+)"', block.group(1)) == deps


@pytest.mark.skipif(shutil.which("terraform") is None, reason="terraform binary not installed (optional check)")
def test_source_tree_module_evaluated_by_terraform(tmp_path: Path) -> None:
    """The provider-less source_tree module, evaluated by terraform itself (offline): the archive of the
    agent functions has the shim, the requirements from pyproject and the code, and no bytecode."""
    import tomllib

    (tmp_path / "main.tf").write_text(f'''
module "tree" {{
  source          = "{TERRAFORM_DIR / "modules" / "source_tree"}"
  repo_root       = "{REPO_ROOT}"
  include_dirs    = ["functions/agent", "shared"]
  include_files   = ["functions/__init__.py"]
  generated_files = {{ "main.py" = "from functions.agent.main import agent_api  # noqa: F401\\n" }}
}}
output "files" {{ value = module.tree.files }}
output "requirements" {{ value = module.tree.requirements }}
output "main" {{ value = module.tree.contents["main.py"] }}
''')
    env = {"TF_IN_AUTOMATION": "1", "CHECKPOINT_DISABLE": "1", "PATH": "/usr/local/bin:/usr/bin:/bin"}
    for args in (["init", "-input=false", "-backend=false"], ["apply", "-auto-approve", "-input=false"]):
        result = subprocess.run(
            ["terraform", *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )
        assert result.returncode == 0, result.stdout + result.stderr
    out = json.loads(
        subprocess.run(
            ["terraform", "output", "-json"],
            cwd=tmp_path,
            env=env,
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
    )
    files = set(out["files"]["value"])
    deps = tomllib.loads((REPO_ROOT / "pyproject.toml").read_text())["project"]["dependencies"]
    assert out["requirements"]["value"].splitlines() == deps
    assert out["main"]["value"].startswith("from functions.agent.main import agent_api")
    assert {"main.py", "requirements.txt", "functions/__init__.py", "shared/pubsub_topology.json"} <= files
    assert not [f for f in files if f.endswith(".pyc") or "__pycache__" in f]
    assert not [f for f in files if f.startswith(("functions/auth", "functions/ws_bridge", "tests", "emulators"))]
    python_files = {f for f in files if f.endswith(".py")} - {"main.py"}
    assert python_files == {f for f in _archive_files("agent-api")}


def test_web_root_is_the_chat_page_ws_bridge_serves() -> None:
    """app.<domain> serves the files of var.web_root from a bucket: they must be the page ws_bridge serves at /,
    or staging would publish an empty site."""
    web_root = REPO_ROOT / platform()["variable"]["web_root"]["default"]
    assert (web_root / "index.html").is_file(), f"{web_root} has no index.html"
    from functions.ws_bridge.page import STATIC

    assert web_root.resolve() == STATIC.resolve()
