"""Typed errors shared by the engine and the API clients.

The hooks in ``plugins/`` raise these; the engine decides on their *type*, never on message
text. Every ``ApiError`` carries what an operator needs to understand a failure: HTTP status,
the ``X-Status-Reason`` header, a (shortened) body, and the request as ``METHOD /path/template``
(a template, so no personal data from ids or query values ends up in messages).
"""

from __future__ import annotations

_BODY_LIMIT = 300


class SyncError(Exception):
    """Base of every error this project raises on purpose."""


class ApiError(SyncError):
    """An API answered with an error status, or could not be reached at all.

    :param status: HTTP status code, or ``None`` when no response arrived (timeout, reset).
    :param reason: value of the ``X-Status-Reason`` header, if any.
    :param body: response body text (shortened for messages).
    :param request: ``"METHOD /path/template"`` of the failed call.
    """

    def __init__(
        self,
        message: str,
        *,
        status: int | None = None,
        reason: str | None = None,
        body: str | None = None,
        request: str | None = None,
    ) -> None:
        self.status = status
        self.reason = reason
        self.body = body
        self.request = request
        super().__init__(message)

    def __str__(self) -> str:
        parts = [self.args[0] if self.args else type(self).__name__]
        if self.request:
            parts.append(f"[{self.request}]")
        if self.status is not None:
            parts.append(f"status={self.status}")
        if self.reason:
            parts.append(f"reason={self.reason}")
        if self.body:
            body = self.body if len(self.body) <= _BODY_LIMIT else self.body[:_BODY_LIMIT] + "..."
            parts.append(f"body={body}")
        return " ".join(parts)


class NotFound(ApiError):
    """404: the addressed record does not exist (any more)."""


class Conflict(ApiError):
    """409: optimistic concurrency check failed (``reason`` is usually ``modified``)."""


class BadRequest(ApiError):
    """400 (and other 4xx not covered below): the request or a value in it was rejected."""


class Forbidden(ApiError):
    """403: the operation is not allowed (e.g. DELETE of a Kommunikation, maxSize > 200)."""


class AuthFailed(ApiError):
    """401: credentials were refused. Check the Airflow connection; retrying will not help."""


class RateLimited(ApiError):
    """429 after all retries: the API kept asking us to slow down.

    :param retry_after: seconds the server asked to wait, if it said so.
    """

    def __init__(self, message: str, *, retry_after: float | None = None, **kw: object) -> None:
        self.retry_after = retry_after
        super().__init__(message, **kw)  # type: ignore[arg-type]


class ServerError(ApiError):
    """5xx after all retries, or no response at all (timeout, connection reset)."""


class EntityError(SyncError):
    """One entity's data cannot be synced as it is (bad value, malformed marker, ...).

    The message is written to the entity's ``syncErrorMessage``: it must be readable by a person
    and must not contain full personal values (names, numbers, emails).
    """


class BadResponse(ServerError):
    """The API answered with a success status but not with what was asked for: no JSON, JSON
    cut off, an empty body, or JSON of the wrong shape (a list where an object belongs).

    A ``ServerError`` (the server misbehaved), so code that handles those handles this too. The
    message says what was wrong with the answer; the answer itself is not kept (it may hold
    personal data).
    """
