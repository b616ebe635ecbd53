"""The base of every project error, and the error types that cross module boundaries and become JSON error
bodies."""

from __future__ import annotations

from typing import Any


class NetraError(Exception):
    """Base of every error the project's services and shared modules define: ``except NetraError`` tells
    ours from a library's or a bug. Errors that are also a built-in kind keep it as a second base
    (``class KeysetError(NetraError, ValueError)``) so existing ``except ValueError`` still holds.

    Deliberately outside it: ``functions.agent.worker.context.RunAborted`` (a BaseException, so that a
    pipeline's ``except Exception`` cannot swallow the stop) and private control-flow signals.
    """


class ApiError(NetraError):
    """An error with an HTTP status, a stable machine code and a human message.

    Rendered as ``{"error": {"code", "message", "details"}}``; never put secrets in any field.
    """

    log_reason: str | None = None  # detail for the log only, never in the answer

    def __init__(
        self,
        status: int,
        code: str,
        message: str,
        details: Any = None,
        headers: dict[str, str] | None = None,
    ) -> None:
        super().__init__(message)
        self.status = status
        self.code = code
        self.message = message
        self.details = details
        self.headers = headers or {}

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        if self.details is not None:
            error["details"] = self.details
        return {"error": error}


class ServiceUnavailable(ApiError):
    """A dependency is starting or down: the caller should retry after ``retry_after`` seconds."""

    def __init__(
        self, message: str, retry_after: int = 2, code: str = "service_unavailable", details: Any = None
    ) -> None:
        super().__init__(503, code, message, details, {"Retry-After": str(max(1, int(retry_after)))})
        self.retry_after = retry_after


def not_found(what: str) -> ApiError:
    return ApiError(404, "not_found", f"{what} not found")


def unauthorized(message: str = "missing or invalid bearer token", code: str = "unauthorized") -> ApiError:
    return ApiError(401, code, message, headers={"WWW-Authenticate": "Bearer"})


# Google client errors that mean "the dependency is slow or down right now", by class name so that this module
# imports no Google library (cold start). Anything else unexpected stays a 500.
_TRANSIENT_GOOGLE_ERRORS = {
    "DeadlineExceeded",
    "ServiceUnavailable",
    "RetryError",
    "TooManyRequests",
    "ResourceExhausted",
    "Aborted",
    "GatewayTimeout",
}


def transient_dependency_error(exc: BaseException) -> ServiceUnavailable | None:
    """A 503 with Retry-After for a timed-out or unavailable Google dependency (Firestore, Pub/Sub, Secret
    Manager) that a handler did not catch itself; None for anything else."""
    kind = type(exc)
    if kind.__module__.startswith("google.api_core") and kind.__name__ in _TRANSIENT_GOOGLE_ERRORS:
        return ServiceUnavailable(
            f"a dependency did not answer in time ({kind.__name__}); retry after the delay",
            retry_after=2,
            code="dependency_unavailable",
        )
    return None


def unstorable_value_error(exc: BaseException) -> ApiError | None:
    """422 ``invalid_value`` for a database "data exception" (SQLSTATE class 22: a NUL character, an invalid
    encoding, a number out of range, a malformed date...) that input validation let through; None otherwise.
    The answer names neither the SQLSTATE nor the database's message (it may quote the value); the log does."""
    args = getattr(exc, "args", ())
    state = args[0].get("C") if args and isinstance(args[0], dict) else None
    if not isinstance(state, str) or not state.startswith("22"):
        return None
    error = ApiError(422, "invalid_value", "a value in the request cannot be stored")
    error.log_reason = f"SQLSTATE {state}"
    return error
