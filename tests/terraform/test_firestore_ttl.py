"""Every Firestore collection the code writes has a TTL policy in Terraform, and every TTL policy names a
collection the code writes (derived from the code: the collection names it passes to Firestore)."""

from __future__ import annotations

import ast
from pathlib import Path

from shared.config import REPO_ROOT
from tests.terraform.hcl import PLATFORM_DIR, module

HELPERS = {"collection_name", "_col", "collection"}  # functions that take a collection name first


def _helper(call: ast.Call) -> bool:
    func = call.func
    return (func.id if isinstance(func, ast.Name) else getattr(func, "attr", None)) in HELPERS


def collections_in_code() -> dict[str, str]:
    """Collection name => file, from every module of functions/ and shared/ that calls a collection helper: the
    module's string constants (STATES = "oauth_states"), literal names given to a helper, and the default of a
    parameter called ``collection``. Names starting with "_" are health probes, read and never written."""
    found: dict[str, str] = {}
    for path in sorted([*(REPO_ROOT / "functions").rglob("*.py"), *(REPO_ROOT / "shared").rglob("*.py")]):
        tree = ast.parse(path.read_text())
        calls = [n for n in ast.walk(tree) if isinstance(n, ast.Call) and _helper(n)]
        if not calls:
            continue
        names = [
            n.value.value
            for n in tree.body
            if isinstance(n, ast.Assign)
            and isinstance(n.value, ast.Constant)
            and isinstance(n.value.value, str)
            and all(isinstance(t, ast.Name) and t.id.isupper() for t in n.targets)
        ]
        names += [
            c.args[0].value
            for c in calls
            if c.args and isinstance(c.args[0], ast.Constant) and isinstance(c.args[0].value, str)
        ]
        for fn in (n for n in ast.walk(tree) if isinstance(n, ast.FunctionDef | ast.AsyncFunctionDef)):
            args = fn.args.args[len(fn.args.args) - len(fn.args.defaults) :]
            names += [
                d.value
                for a, d in zip(args, fn.args.defaults, strict=True)
                if a.arg == "collection" and isinstance(d, ast.Constant)
            ]
        for name in names:
            if not name.startswith("_"):
                found.setdefault(name, str(Path(path).relative_to(REPO_ROOT)))
    return found


def test_every_collection_the_code_writes_has_a_ttl_policy_and_the_reverse() -> None:
    ttl = set(module(PLATFORM_DIR)["locals"]["ttl_collections"])
    code = collections_in_code()
    assert {"oauth_states", "refresh_families", "runs", "events", "rate_limits"} <= set(code), code
    assert set(code) - ttl == set(), f"collections without a TTL policy: { {c: code[c] for c in set(code) - ttl} }"
    assert ttl - set(code) == set(), f"TTL policies on collections no code writes: {sorted(ttl - set(code))}"
    field = module(PLATFORM_DIR)["resource"]["google_firestore_field"]["ttl"]
    assert field["field"] == "expires_at" and field["ttl_config"] == [{}]
