"""Every error class the services and shared modules define derives from shared.errors.NetraError."""

from __future__ import annotations

import ast
import builtins

from shared.config import REPO_ROOT

BUILTIN_EXCEPTIONS = {
    name for name, value in vars(builtins).items() if isinstance(value, type) and issubclass(value, BaseException)
}
# The base itself; and not errors: a BaseException on purpose (a pipeline's `except Exception` must not
# swallow it) and a private control-flow signal inside one function.
OUTSIDE = {
    "shared/errors.py:NetraError",
    "functions/agent/worker/context.py:RunAborted",
    "functions/agent/api/messages.py:_Replay",
}


def test_no_error_class_bypasses_netra_error() -> None:
    """A class whose first base is a built-in exception would not be caught by ``except NetraError``; a
    built-in kind may follow NetraError as a second base (``class KeysetError(NetraError, ValueError)``)."""
    bypassing = []
    for root in ("functions", "shared"):
        for path in sorted((REPO_ROOT / root).rglob("*.py")):
            for node in ast.walk(ast.parse(path.read_text())):
                if isinstance(node, ast.ClassDef) and node.bases:
                    first = node.bases[0]
                    if isinstance(first, ast.Name) and first.id in BUILTIN_EXCEPTIONS:
                        bypassing.append(f"{path.relative_to(REPO_ROOT)}:{node.name}")
    assert [name for name in bypassing if name not in OUTSIDE] == []
    assert OUTSIDE <= set(bypassing), "an exception on the allow-list moved or was renamed"
