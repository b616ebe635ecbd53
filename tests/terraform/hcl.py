"""Reading the Terraform code with python-hcl2 (no terraform binary needed) and the Python code it deploys
with ast: the shared helpers of tests/terraform."""

from __future__ import annotations

import ast
import re
from collections.abc import Iterator
from functools import cache
from pathlib import Path
from typing import Any

import hcl2
from hcl2.utils import SerializationOptions

from shared.config import REPO_ROOT

TERRAFORM_DIR = REPO_ROOT / "terraform"
PLATFORM_DIR = TERRAFORM_DIR / "modules" / "platform"
OPTIONS = SerializationOptions(
    strip_string_quotes=True, explicit_blocks=False, preserve_heredocs=False, with_comments=False
)


def tf_files() -> list[Path]:
    return sorted(p for p in TERRAFORM_DIR.rglob("*.tf") if ".terraform" not in p.parts)


def module_dirs() -> list[Path]:
    return sorted({p.parent for p in tf_files()})


@cache
def load(path: Path) -> dict[str, Any]:
    with path.open() as handle:
        return hcl2.load(handle, serialization_options=OPTIONS)


@cache
def module(directory: Path) -> dict[str, Any]:
    """Blocks of every .tf file of one module, merged: locals/variable/output/module as name => body,
    resource/data as type => name => body."""
    merged: dict[str, Any] = {
        "locals": {},
        "variable": {},
        "output": {},
        "module": {},
        "resource": {},
        "data": {},
        "ephemeral": {},
    }
    for path in sorted(directory.glob("*.tf")):
        doc = load(path)
        for block in doc.get("locals", []):
            merged["locals"].update(block)
        for kind in ("variable", "output", "module"):
            for block in doc.get(kind, []):
                merged[kind].update(block)
        for kind in ("resource", "data", "ephemeral"):
            for block in doc.get(kind, []):
                for rtype, named in block.items():
                    merged[kind].setdefault(rtype, {}).update(named)
    return merged


def platform() -> dict[str, Any]:
    return module(PLATFORM_DIR)


def interpolations(text: str) -> Iterator[tuple[int, int, str]]:
    """(start, end, expression) of every ${...} in ``text``, braces balanced."""
    i = 0
    while (start := text.find("${", i)) != -1:
        depth, j = 0, start + 1
        while j < len(text):
            if text[j] == "{":
                depth += 1
            elif text[j] == "}":
                depth -= 1
                if depth == 0:
                    break
            j += 1
        yield start, j + 1, text[start + 2 : j]
        i = j + 1


def render(value: Any, samples: dict[str, str], patterns: list[tuple[re.Pattern[str], str]]) -> str:
    """A Terraform value as the string the platform would set, with sample values for expressions.

    An expression without a sample fails loudly, so a new kind of value cannot slip through unchecked."""
    if isinstance(value, bool):
        return "true" if value else "false"
    if not isinstance(value, str):
        return str(value)
    out, last = [], 0
    for start, end, expr in interpolations(value):
        out.append(value[last:start])
        if expr in samples:
            out.append(samples[expr])
        else:
            for pattern, template in patterns:
                match = pattern.fullmatch(expr)
                if match:
                    out.append(match.expand(template))
                    break
            else:
                raise AssertionError(
                    f"no sample value for the Terraform expression ${{{expr}}}: add one to "
                    "SAMPLES in tests/terraform/test_settings_coverage.py"
                )
        last = end
    out.append(value[last:])
    return "".join(out)


# -- Python side ----------------------------------------------------------------------------------------


def module_file(dotted: str) -> Path | None:
    base = REPO_ROOT.joinpath(*dotted.split("."))
    for candidate in (base.with_suffix(".py"), base / "__init__.py"):
        if candidate.is_file():
            return candidate
    return None


def _imports(path: Path) -> set[str]:
    found: set[str] = set()
    tree = ast.parse(path.read_text(), str(path))
    parts = list(path.relative_to(REPO_ROOT).with_suffix("").parts)
    package = parts[:-1]  # the package a module (or a package's __init__) belongs to / is
    if path.name == "__init__.py":
        package = parts[:-1]
    for node in ast.walk(tree):
        if isinstance(node, ast.Import):
            found.update(alias.name for alias in node.names)
        elif isinstance(node, ast.ImportFrom):
            if node.level:
                base = package[: len(package) - (node.level - 1)]
                mod = ".".join(base + ([node.module] if node.module else []))
            else:
                mod = node.module or ""
            found.add(mod)
            found.update(f"{mod}.{alias.name}" for alias in node.names)
    return {m for m in found if m.split(".")[0] in ("shared", "functions")}


def import_closure(entry_modules: list[str]) -> set[Path]:
    """Every repo file that importing ``entry_modules`` can load (imports inside functions included)."""
    seen: set[Path] = set()
    todo = list(entry_modules)
    while todo:
        dotted = todo.pop()
        parts = dotted.split(".")
        for i in range(1, len(parts) + 1):  # parent packages run their __init__ too
            path = module_file(".".join(parts[:i]))
            if path is None or path in seen:
                continue
            seen.add(path)
            todo.extend(_imports(path))
    return seen


ENV_CALLS = {"getenv", "env_secret"}


def environment_reads(paths: set[Path]) -> dict[str, list[tuple[str, bool]]]:
    """Env var name => [(file, required)] for literal reads: os.environ["X"] (required), os.environ.get("X"),
    os.getenv("X"), env_secret("X"), environ.get("X") (optional)."""
    reads: dict[str, list[tuple[str, bool]]] = {}

    def add(name: str, path: Path, required: bool) -> None:
        reads.setdefault(name, []).append((str(path.relative_to(REPO_ROOT)), required))

    for path in paths:
        for node in ast.walk(ast.parse(path.read_text(), str(path))):
            if isinstance(node, ast.Subscript) and isinstance(node.ctx, ast.Load):
                target = node.value
                if (
                    isinstance(target, ast.Attribute)
                    and target.attr == "environ"
                    and isinstance(node.slice, ast.Constant)
                    and isinstance(node.slice.value, str)
                ):
                    add(node.slice.value, path, True)
            elif (
                isinstance(node, ast.Call)
                and node.args
                and isinstance(node.args[0], ast.Constant)
                and isinstance(node.args[0].value, str)
            ):
                func = node.func
                name = func.attr if isinstance(func, ast.Attribute) else func.id if isinstance(func, ast.Name) else ""
                owner = func.value if isinstance(func, ast.Attribute) else None
                is_environ_get = (
                    name == "get"
                    and isinstance(owner, ast.Attribute | ast.Name)
                    and getattr(owner, "attr", getattr(owner, "id", "")) in ("environ", "env")
                )
                if is_environ_get or name in ENV_CALLS:
                    value = node.args[0].value
                    if re.fullmatch(r"[A-Z][A-Z0-9_]+", value):
                        add(value, path, False)
    return reads
