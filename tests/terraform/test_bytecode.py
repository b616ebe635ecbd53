"""Bytecode the deployed artifacts carry, checked offline by replaying each build's compile step.

Cloud Run functions: Google's Python buildpack (GoogleCloudPlatform/buildpacks,
cmd/python/functions_framework) runs ``python3 -m compileall -f -q .`` over the function source, and the
image export then sets every file's mtime to a constant (buildpacks platform spec, build reproducibility).
Default timestamp pycs therefore never match at run time; with SOURCE_DATE_EPOCH in the build environment
(modules/cloud_function) compileall writes checked-hash pycs, which match whatever the mtimes. (A pyc shipped
in the archive would be overwritten by that ``-f`` compile, so the archive carries none.)

The app image (ws_bridge): its Dockerfile compiles shared/ and functions/ to unchecked-hash pycs, valid
whatever a later build step or a reproducible-build export does to the mtimes.

Each test builds the tree, compiles it as the build does, resets the mtimes as the export does, then imports
the entry point with ``python -v`` and PYTHONDONTWRITEBYTECODE=1 (as on Cloud Run): every project module must
load from its pyc, none be compiled from source.
"""

from __future__ import annotations

import os
import re
import shlex
import shutil
import subprocess
import sys
from pathlib import Path

from shared.config import REPO_ROOT
from tests.terraform.hcl import TERRAFORM_DIR, module, platform

EXPORT_MTIME = 315532801  # 1980-01-01T00:00:01Z, the constant the buildpacks export gives every file
DOCKERFILE = TERRAFORM_DIR / "image" / "Dockerfile"


def _build_env() -> dict[str, str]:
    build = module(TERRAFORM_DIR / "modules" / "cloud_function")["resource"]["google_cloudfunctions2_function"]
    env = build["this"]["build_config"][0]["environment_variables"]
    return {k: str(v) for k, v in env.items() if not str(v).startswith("${")}


def _copy_tree(dest: Path, dirs: list[str], files: list[str]) -> None:
    for d in dirs:
        shutil.copytree(REPO_ROOT / d, dest / d, ignore=shutil.ignore_patterns("__pycache__", "tests"))
    for f in files:
        (dest / f).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy(REPO_ROOT / f, dest / f)


def _reset_mtimes(root: Path) -> None:
    for path in root.rglob("*"):
        os.utime(path, (EXPORT_MTIME, EXPORT_MTIME))


def _compiled_from_source(root: Path, statement: str, tmp_path: Path) -> tuple[list[str], list[str]]:
    """(project modules compiled from source, project modules loaded from a pyc) when ``statement`` runs."""
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "PYTHONDONTWRITEBYTECODE": "1",
        "PYTHONPATH": str(root),
        "NETRA_ENV": "test",
        "NETRA_LOCAL_DIR": str(tmp_path / "local"),
        "DATABASE_URL": "postgresql://u:p@127.0.0.1:9/x",
    }
    result = subprocess.run(
        [sys.executable, "-v", "-c", statement], cwd=root, env=env, capture_output=True, text=True, timeout=120
    )
    assert result.returncode == 0, result.stderr[-3000:]
    loaded = re.findall(r"^# code object from '?([^'\n]+)'?$", result.stderr, re.MULTILINE)
    ours = [p for p in loaded if p.startswith(str(root))]
    return [p for p in ours if p.endswith(".py")], [p for p in ours if p.endswith(".pyc")]


def test_function_build_leaves_bytecode_valid_after_the_image_export(tmp_path: Path) -> None:
    spec = platform()["locals"]["functions"]["auth"]
    root = tmp_path / "workspace"
    _copy_tree(root, [spec["dir"], "shared"], ["functions/__init__.py"])
    (root / "main.py").write_text(f"from {spec['module']} import {spec['entry_point']}  # noqa: F401\n")
    # The buildpack's own step (cmd/python/functions_framework/lib/lib.go), in the build's environment.
    subprocess.run(
        [sys.executable, "-m", "compileall", "-f", "-q", "."],
        cwd=root,
        env={"PATH": os.environ.get("PATH", ""), **_build_env()},
        check=True,
        timeout=120,
    )
    _reset_mtimes(root)
    from_source, from_pyc = _compiled_from_source(root, "import main", tmp_path)
    assert not from_source, f"compiled again at every cold start: {from_source[:5]} ({len(from_source)} modules)"
    assert any(p.endswith(".pyc") and "/functions/auth/" in p for p in from_pyc)


def _dockerfile_compile_commands() -> list[str]:
    """The Dockerfile's RUN lines that compile bytecode, after the project's sources are copied in."""
    lines = DOCKERFILE.read_text().splitlines()
    last_copy = max(i for i, line in enumerate(lines) if re.match(r"COPY (shared|functions) ", line))
    return [line.removeprefix("RUN ") for line in lines[last_copy:] if line.startswith("RUN ") and "compileall" in line]


def test_app_image_carries_bytecode_for_the_ws_bridge(tmp_path: Path) -> None:
    commands = _dockerfile_compile_commands()
    assert commands, "the app image compiles no bytecode after copying shared/ and functions/"
    root = tmp_path / "app"
    _copy_tree(root, ["shared", "functions"], [])
    for command in commands:
        argv = shlex.split(command)
        assert argv[0] == "python"
        subprocess.run([sys.executable, *argv[1:]], cwd=root, check=True, timeout=120)
    _reset_mtimes(root)
    from_source, from_pyc = _compiled_from_source(root, "import functions.ws_bridge.main", tmp_path)
    assert not from_source, f"compiled again at every cold start: {from_source[:5]} ({len(from_source)} modules)"
    assert any("/functions/ws_bridge/" in p for p in from_pyc)
