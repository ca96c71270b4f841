"""The one error hierarchy of marketpipe.

Every error a user can cause or meet carries a message that names the offending value, what is
allowed and what to do. Third-party errors are translated at the seam where they occur and chained
(``raise ... from exc``) so the cause is kept for debugging but never shown as a traceback to a user.
"""

from __future__ import annotations

from typing import Any


class MarketpipeError(Exception):
    """Root of every error marketpipe raises on purpose."""

    exit_code = 1


class ConfigurationError(MarketpipeError):
    """A setting is missing, malformed or out of range."""

    exit_code = 2


class RequestError(MarketpipeError):
    """A user asked for something invalid (dates, symbols, timeframe, dataset): refused before any
    request to a vendor or write to storage."""

    exit_code = 2


class ServiceError(MarketpipeError):
    """A component of the embedded stack cannot be installed, started, stopped or reached."""


class PortInUseError(ServiceError):
    """A port the stack needs is taken by a process marketpipe did not start."""

    def __init__(self, component: str, host: str, port: int, setting: str) -> None:
        self.component, self.host, self.port, self.setting = component, host, port, setting
        super().__init__(
            f"port {port} on {host} is already in use by another process, so {component} cannot start; "
            f"stop that process or choose another port with {setting}"
        )


class StorageError(MarketpipeError):
    """The hot store or the lake refused or failed an operation."""


class MigrationError(StorageError):
    """A schema migration cannot be applied or the ledger disagrees with the files."""


class SourceError(MarketpipeError):
    """A vendor request failed. ``retryable`` tells the resilience layer whether to try again.

    It carries what the retry loop and the dead-letter queue need: the ``request`` (a redacted
    ``sources.http.Request``), the HTTP status, the vendor's Retry-After and, for a malformed
    response, its body.
    """

    retryable = False

    def __init__(
        self,
        message: str,
        *,
        request: Any = None,
        status_code: int | None = None,
        retry_after_seconds: float | None = None,
        payload_text: str | None = None,
    ) -> None:
        super().__init__(message)
        self.request = request
        self.status_code = status_code
        self.retry_after_seconds = retry_after_seconds
        self.payload_text = payload_text


class RetryableSourceError(SourceError):
    """Transient vendor failure: 429, 5xx, timeouts, connection resets."""

    retryable = True


class PermanentSourceError(SourceError):
    """Vendor failure that retrying cannot fix: 400, 401, 403, 404, malformed payloads."""


class DataQualityError(MarketpipeError):
    """Data failed validation in a way that stops the batch."""
