"""docs/WEBSOCKET.md matches the code: every error code the bridge can send and every close code it uses is
documented, every documented one exists, and every setting of the bridge is in the configuration table."""

from __future__ import annotations

import ast
import re
from pathlib import Path

from functions.ws_bridge.settings import BridgeSettings
from shared.models import ws as ws_models

ROOT = Path(__file__).resolve().parents[2]
DOC = (ROOT / "docs" / "WEBSOCKET.md").read_text()
CODE = sorted((ROOT / "functions" / "ws_bridge").glob("*.py"))
# Close codes that uvicorn's WebSocket layer sends on the bridge's behalf (configured in __main__.py).
PROTOCOL_LAYER_CLOSES = {1009, 1011}


def section(title: str) -> str:
    start = DOC.index(f"## {title}\n")
    end = DOC.find("\n## ", start + 1)
    return DOC[start : end if end != -1 else len(DOC)]


def table_keys(text: str) -> set[str]:
    """The first column of a Markdown table, split on "," and "or" (one row may name several codes)."""
    keys: set[str] = set()
    for line in text.splitlines():
        if not line.startswith("| ") or line.startswith("|---"):
            continue
        first = line.split("|")[1]
        keys |= set(re.findall(r"`([a-z_0-9]+)`", first)) | set(re.findall(r"\b(\d{4})\b", first))
    return keys


def error_codes_sent() -> set[str]:
    """Literal codes of send_error(conn, CODE, ...) calls and of {"type": "error", "code": CODE} frames, and
    the default of an error code taken from another service's answer (``error.get("code", DEFAULT)``)."""
    found: set[str] = set()
    for path in CODE:
        tree = ast.parse(path.read_text())
        # Codes computed by a helper (frames._validation_code): the first item of each returned tuple.
        computed = {
            ret.value.elts[0].value
            for fn in ast.walk(tree)
            if isinstance(fn, ast.FunctionDef) and fn.name.endswith("_code")
            for ret in ast.walk(fn)
            if isinstance(ret, ast.Return)
            and isinstance(ret.value, ast.Tuple)
            and isinstance(ret.value.elts[0], ast.Constant)
        }
        for node in ast.walk(tree):
            if isinstance(node, ast.Call) and getattr(node.func, "id", getattr(node.func, "attr", "")) == "send_error":
                code = node.args[1]
                if isinstance(code, ast.Constant):
                    found.add(code.value)
                elif isinstance(code, ast.Call) and len(code.args) == 2 and isinstance(code.args[1], ast.Constant):
                    found.add(code.args[1].value)
                elif isinstance(code, ast.Name) and computed:
                    found |= computed
                else:
                    raise AssertionError(f"{path.name}:{node.lineno}: error code not a literal; list it here")
            if isinstance(node, ast.Dict):
                pairs = {k.value: v for k, v in zip(node.keys, node.values, strict=True) if isinstance(k, ast.Constant)}
                kind, code = pairs.get("type"), pairs.get("code")
                if isinstance(kind, ast.Constant) and kind.value == "error" and isinstance(code, ast.Constant):
                    found.add(code.value)
    return found


def test_every_error_code_is_documented_and_every_documented_one_is_sent() -> None:
    sent = error_codes_sent()
    assert {"thread_not_found", "frame_too_large", "too_many_connections"} <= sent, sent  # the scan works
    documented = table_keys(section("Errors"))
    assert sent - documented == set(), f"sent but not in docs/WEBSOCKET.md: {sent - documented}"
    assert documented - sent == set(), f"documented but never sent: {documented - sent}"
    assert set(ws_models.ERROR_CODES) == sent, "shared/models/ws.py ERROR_CODES lists exactly the codes sent"


def test_every_close_code_is_documented() -> None:
    constants = {v for k, v in vars(ws_models).items() if k.startswith("CLOSE_") and isinstance(v, int)}
    used: set[int] = set(PROTOCOL_LAYER_CLOSES)
    for path in CODE:
        names = set(re.findall(r"\b(CLOSE_[A-Z_]+)\b", path.read_text())) - {"CLOSE_TIMEOUT_S"}  # a setting
        used |= {vars(ws_models)[name] for name in names}
    assert used <= constants | PROTOCOL_LAYER_CLOSES
    documented = {int(k) for k in table_keys(section("Close codes")) if k.isdigit()}
    assert used - documented == set(), f"closes with codes not in docs/WEBSOCKET.md: {used - documented}"
    assert documented - constants == set(), f"documented close codes without a constant: {documented - constants}"


def test_every_setting_is_in_the_configuration_table() -> None:
    own = set(BridgeSettings.model_fields) - {
        name for base in BridgeSettings.__mro__[1:] for name in getattr(base, "model_fields", {})
    }
    table = section("Configuration (env vars)")
    missing = {name.upper() for name in own} - set(re.findall(r"`([A-Z_0-9]+)`", table))
    assert missing == set(), f"settings not documented: {missing}"
