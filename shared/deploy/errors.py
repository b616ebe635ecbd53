"""The one error type of the deploy helpers: a stable code, a message, and the exit status it maps to."""

from __future__ import annotations

from shared.errors import NetraError


class DeployError(NetraError):
    """A refusal or failure explained to the operator. Never carries secrets."""

    def __init__(self, code: str, message: str, exit_code: int = 3) -> None:
        super().__init__(f"{code}: {message}")
        self.code = code
        self.message = message
        self.exit_code = exit_code
