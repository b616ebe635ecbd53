"""The configuration reference, read from the settings classes (field name upper-cased = variable).

`python -m tests.config_reference > docs/CONFIGURATION.md` writes it; tests/test_config_reference.py fails when
the page no longer matches the code.
"""

from __future__ import annotations

import importlib
import sys
from typing import Any

from pydantic import SecretStr
from pydantic_core import PydanticUndefined
from pydantic_settings import BaseSettings

from shared.config import CommonSection

SERVICES = [
    ("auth", "functions.auth.settings:AuthSettings"),
    ("agent API and worker", "functions.agent.settings:AgentSettings"),
    ("ws_bridge", "functions.ws_bridge.settings:BridgeSettings"),
    ("migration job", "shared.db.migrate:MigrateSettings"),
    ("rollup job", "functions.agent.rollup_job:RollupSettings"),
]


def load(spec: str) -> type[BaseSettings]:
    module, name = spec.split(":")
    return getattr(importlib.import_module(module), name)


def _default(field: Any) -> str:
    if field.default is PydanticUndefined:
        return "required"
    if field.default is None:
        return "—"
    if isinstance(field.default, SecretStr):
        return "(secret)"
    value = field.default.value if hasattr(field.default, "value") else field.default
    return f"`{value}`" if value != "" else '`""`'


def _rows(cls: type[BaseSettings], skip: set[str]) -> list[str]:
    rows = []
    for name, field in cls.model_fields.items():
        if name in skip:
            continue
        secret = " (secret)" if field.annotation in (SecretStr, SecretStr | None) else ""
        description = (field.description or "").replace("|", "\\|").replace("\n", " ")
        rows.append(f"| `{name.upper()}`{secret} | {_default(field)} | {description} |")
    return rows


def render() -> str:
    common = set(CommonSection.model_fields)
    lines = [
        "# Configuration reference",
        "",
        "Generated from the settings classes by `python -m tests.config_reference > docs/CONFIGURATION.md`;",
        "`tests/test_config_reference.py` fails when it is stale. Each service validates its variables once at",
        "start and reports every problem together. Variables marked (secret) come from Secret Manager in the",
        "cloud (Terraform wires them) and from the environment or `.env` locally; they are never logged.",
        "",
        "## Every service",
        "",
        "| variable | default | holds |",
        "|---|---|---|",
        *_rows(CommonSection, set()),
    ]
    for title, spec in SERVICES:
        lines += [
            "",
            f"## {title} (`{spec.replace(':', '.')}`)",
            "",
            "| variable | default | holds |",
            "|---|---|---|",
            *_rows(load(spec), common),
        ]
    return "\n".join(lines) + "\n"


if __name__ == "__main__":
    sys.stdout.write(render())
