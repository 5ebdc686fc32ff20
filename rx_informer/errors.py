"""Every error the library raises or reports, under one base class.

::

    InformerError
    ├── ConfigError            the kubeconfig or in-cluster setup cannot be used (not retried)
    ├── InvalidResourceError   a resource, path, namespace or option that can never be valid
    │                          (raised before any request; not retried)
    ├── TransformError         the informer's transform failed on an object (reported as an
    │                          ERROR event; the object is cached untransformed)
    └── RequestError           one list or watch request failed (reported as an ERROR event,
        │                      then retried with backoff)
        ├── ConnectError       no connection: refused, reset, DNS or TLS failure
        ├── InactivityError    the connection stayed open but no byte came for too long
        ├── StatusError        the server answered with an error status (HTTP or in-stream)
        │   └── GoneError      410: the resourceVersion or continue token expired (relist)
        └── MalformedError     a line that is not a watch event (relist)

httpx exceptions are translated into these in one place (``protocol.transport``), with the
original kept as ``__cause__``. Credentials never appear in any message.
"""

from __future__ import annotations


class InformerError(Exception):
    """Base class of every error of this library."""


class ConfigError(InformerError):
    """The cluster configuration cannot be used as given."""


class InvalidResourceError(InformerError, ValueError):
    """A resource name, path, namespace or option that the API server could never accept."""


class TransformError(InformerError):
    """A user transform raised or returned something that is not an object."""


class RequestError(InformerError):
    """A list or watch request that failed; the informer retries it."""

    def __init__(self, message: str, *, verb: str = "", resource: str = "") -> None:
        super().__init__(message)
        self.verb = verb
        self.resource = resource


class ConnectError(RequestError):
    """The request could not reach the server or the connection broke."""


class InactivityError(RequestError):
    """No data arrived for longer than the inactivity timeout (a half-open connection)."""


class StatusError(RequestError):
    """The server answered with an error ``Status``, as an HTTP status or an ERROR event."""

    def __init__(
        self,
        message: str,
        *,
        code: int,
        reason: str = "",
        retry_after: float | None = None,
        verb: str = "",
        resource: str = "",
    ) -> None:
        super().__init__(message, verb=verb, resource=resource)
        self.code = code
        self.reason = reason
        self.retry_after = retry_after


class GoneError(StatusError):
    """410: the history the request needs is gone; only a fresh list recovers."""


class MalformedError(RequestError):
    """The server sent something that is not a valid watch event or list."""
