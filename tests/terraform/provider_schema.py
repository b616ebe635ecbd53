"""The google provider's schema, offline: attribute and block names per resource, read from the npm package
@cdktf/provider-google (generated from the provider; 16.12.1 = hashicorp/google 6.50.0, the version
terraform/ pins). Fetched once with the npm of emulators.firestore.launcher.find_node and cached, as compact
JSON, under .venv-checkov/ (git-ignored). This lets the tests catch a misspelt or misplaced attribute that
`terraform validate` would catch, without the provider binary."""

from __future__ import annotations

import fcntl
import json
import re
import subprocess
import tarfile
import tempfile
from functools import cache
from pathlib import Path

from tests.terraform.checkov_env import VENV

PACKAGE = "@cdktf/provider-google@16.12.1"
PROVIDER_VERSION = "6.50.0"
CACHE = VENV / f"google-provider-{PROVIDER_VERSION}.json"

# hashicorp/time (time_sleep), from its prebuilt bindings the same way: 11.0.1 = time 0.13.1 (terraform/ pins ~> 0.13).
TIME_PACKAGE = "@cdktf/provider-time@11.0.1"
TIME_PROVIDER_VERSION = "0.13.1"
TIME_CACHE = VENV / f"time-provider-{TIME_PROVIDER_VERSION}.json"

_INTERFACE = re.compile(r"export interface (\w+) (?:extends [\w.]+ )?\{(.*?)\n\}", re.S)
_ATTRIBUTE = re.compile(r"#([a-z0-9_]+) \w+#")


def _extract(tgz: Path, prefix: str = "google_") -> dict[str, dict[str, list[str]]]:
    schema: dict[str, dict[str, list[str]]] = {}
    with tarfile.open(tgz) as archive:
        for member in archive:
            match = re.fullmatch(r"package/lib/([a-z0-9-]+)/index\.d\.ts", member.name)
            if not match or match.group(1).startswith("data-"):
                continue
            handle = archive.extractfile(member)
            assert handle is not None
            text = handle.read().decode()
            resource = prefix + match.group(1).replace("-", "_")
            schema[resource] = {
                m.group(1): sorted(set(_ATTRIBUTE.findall(m.group(2)))) for m in _INTERFACE.finditer(text)
            }
    return schema


def ensure_schema(package: str = PACKAGE, cache_file: Path = CACHE, prefix: str = "google_", least: int = 500) -> Path:
    VENV.mkdir(parents=True, exist_ok=True)
    with open(VENV / ".schema.lock", "w") as lock:
        fcntl.flock(lock, fcntl.LOCK_EX)
        if cache_file.is_file():
            return cache_file
        from emulators.firestore.launcher import find_node

        runtime = find_node()
        with tempfile.TemporaryDirectory() as tmp:
            subprocess.run(
                [*runtime.npm, "pack", package, "--pack-destination", tmp, "--silent"],
                check=True,
                capture_output=True,
                timeout=600,
                env=runtime.env(),
                cwd=tmp,
            )
            tgz = next(Path(tmp).glob("*.tgz"))
            schema = _extract(tgz, prefix)
        assert len(schema) >= least, "the provider package did not contain the expected resources"
        cache_file.write_text(json.dumps(schema))
    return cache_file


@cache
def schema() -> dict[str, dict[str, list[str]]]:
    google = json.loads(ensure_schema().read_text())
    time = json.loads(ensure_schema(TIME_PACKAGE, TIME_CACHE, "time_", 4).read_text())
    return {**google, **time}


def _camel(name: str) -> str:
    return "".join(part.capitalize() for part in name.split("_"))


META = {"for_each", "count", "depends_on", "lifecycle", "provider", "provisioner", "connection"}
# Arguments whose value is a map, not a nested block.
MAP_ARGUMENTS = {
    "triggers",
    "labels",
    "environment_variables",
    "annotations",
    "limits",
    "user_labels",
    "label_extractors",
    "metadata",
    "triggers_replace",
}


def unknown_attributes(rtype: str, body: dict) -> list[str]:
    """Paths in ``body`` that the provider schema of ``rtype`` does not have (blocks checked by nesting)."""
    interfaces = schema().get(rtype)
    if interfaces is None:
        return [f"{rtype}: no such resource type in google {PROVIDER_VERSION} or time {TIME_PROVIDER_VERSION}"]
    root = f"{_camel(rtype.split('_', 1)[1])}Config"
    problems: list[str] = []

    def visit(interface: str, block: dict, where: str) -> None:
        allowed = interfaces.get(interface)
        if allowed is None:
            problems.append(f"{where}: not a block of {rtype}")
            return
        prefix = interface[: -len("Config")] if interface == root else interface
        for key, value in block.items():
            if key in META or key.startswith("__"):
                continue
            if key == "dynamic":
                for dyn in value:
                    for name, body_ in dyn.items():
                        if name not in allowed:
                            problems.append(f"{where}.{name}: unknown block")
                            continue
                        for content in body_.get("content", []):
                            visit(prefix + _camel(name), content, f"{where}.{name}")
                continue
            if key not in allowed:
                problems.append(f"{where}.{key}: unknown argument")
            elif (
                isinstance(value, list)
                and value
                and all(isinstance(v, dict) for v in value)
                and key not in MAP_ARGUMENTS
            ):
                for item in value:
                    visit(prefix + _camel(key), item, f"{where}.{key}")

    visit(root, body, rtype)
    return problems
