"""One exception hierarchy for kvyard; each HTTP API maps it to its own error shape at the edge."""

from __future__ import annotations


class KvyardError(Exception):
    """Base class. ``status`` is the HTTP status; ``kind`` a stable machine-readable name."""

    status = 500
    kind = "api_error"

    def __init__(self, message: str, *, param: str | None = None):
        super().__init__(message)
        self.message = message
        self.param = param


class InvalidRequest(KvyardError, ValueError):
    """The request is malformed or asks for something impossible; the message says what to fix."""

    status = 400
    kind = "invalid_request_error"


class AuthenticationFailed(KvyardError):
    status = 401
    kind = "authentication_error"


class ModelNotFound(KvyardError):
    status = 404
    kind = "not_found_error"


class RouteNotFound(KvyardError):
    """No endpoint at this path."""

    status = 404
    kind = "not_found_error"


class MethodNotAllowed(KvyardError):
    status = 405
    kind = "invalid_request_error"


class RequestTooLarge(KvyardError):
    status = 413
    kind = "request_too_large"


class RateLimited(KvyardError):
    """The caller is over its own limit (for example concurrent requests per API key)."""

    status = 429
    kind = "rate_limit_error"


class Overloaded(KvyardError):
    status = 503
    kind = "overloaded_error"


class EngineFailure(KvyardError):
    """An engine failed while serving an accepted request (not the caller's fault)."""

    status = 502
    kind = "api_error"


def as_kvyard_error(exc: BaseException) -> KvyardError:
    """Any failure as a ``KvyardError``: ours pass through, anything else is an engine failure."""
    if isinstance(exc, KvyardError):
        return exc
    return EngineFailure(f"the request failed inside kvyard: {type(exc).__name__}; retry it")
