"""The errors zapmux raises, one tree, each knowing its HTTP status and code.

    ZapmuxError
    ├── InvalidInput            400 invalid_input
    │   ├── InvalidTenantId     400 invalid_tenant_id
    │   └── InvalidPhone        400 invalid_phone
    ├── Unauthorized            401 unauthorized
    ├── Forbidden               403 forbidden
    ├── NotFound                404 not_found
    │   └── TenantNotFound      404 tenant_not_found
    ├── Conflict                409 conflict
    │   ├── TenantExists        409 tenant_exists
    │   ├── TenantNotConnected  409 tenant_not_connected
    │   └── OptedOut            409 opted_out
    ├── QrExpired               410 qr_expired
    ├── PayloadTooLarge         413 payload_too_large
    ├── NotOnWhatsApp           422 not_on_whatsapp
    ├── NewContactRestricted    422 new_contact_restricted
    ├── Unprocessable           422 validation_error
    │   └── NotSupported        422 not_supported  (the tenant's engine cannot do that)
    ├── InvalidSchedule         422 invalid_send_at
    ├── RateLimited             429 rate_limited
    └── EngineError             502 engine_error   (the engine failed a command)
        └── SendLater           502 send_later     (not sent now; the queue retries it)

``engines.base.NotConnected`` (503 not_connected) is the engine seam's own: a session
command found no connection. The send queue keeps the message for later; the API
answers it as ``TenantNotConnected``.

Engine and driver errors are translated into these at the seam, ``raise … from exc``.
"""

from __future__ import annotations

from typing import Any, ClassVar


class ZapmuxError(Exception):
    """Something went wrong in zapmux."""

    status: ClassVar[int] = 500
    code: ClassVar[str] = "internal_error"

    def __init__(self, message: str | None = None, **details: Any) -> None:
        self.message = message or (self.__doc__ or "").strip()
        self.details = details
        super().__init__(self.message)

    def body(self) -> dict[str, Any]:
        error: dict[str, Any] = {"code": self.code, "message": self.message}
        error.update(self.details)
        return {"success": False, "error": error}


class InvalidInput(ZapmuxError):
    """The request is not valid."""

    status, code = 400, "invalid_input"


class InvalidTenantId(InvalidInput):
    """Tenant ids are 1-64 characters of A-Z a-z 0-9 _ . - and do not start with . or -."""

    code = "invalid_tenant_id"


class InvalidPhone(InvalidInput):
    """The phone number is not valid: give 8-15 digits with the country code."""

    code = "invalid_phone"


class Unauthorized(ZapmuxError):
    """An API key or tenant token is required (X-Api-Key or Authorization: Bearer)."""

    status, code = 401, "unauthorized"


class Forbidden(ZapmuxError):
    """This key may not do that."""

    status, code = 403, "forbidden"


class NotFound(ZapmuxError):
    """Not found."""

    status, code = 404, "not_found"


class TenantNotFound(NotFound):
    """No tenant has that id."""

    code = "tenant_not_found"


class Conflict(ZapmuxError):
    """The request conflicts with the current state."""

    status, code = 409, "conflict"


class TenantExists(Conflict):
    """A tenant with that id already exists."""

    code = "tenant_exists"


class TenantNotConnected(Conflict):
    """The tenant is not connected to WhatsApp and will not reconnect by itself."""

    code = "tenant_not_connected"


class OptedOut(Conflict):
    """That number asked this tenant to stop writing (an opt-out keyword); nothing was sent."""

    code = "opted_out"


class QrExpired(ZapmuxError):
    """That QR code is no longer valid: scan the current one."""

    status, code = 410, "qr_expired"


class PayloadTooLarge(ZapmuxError):
    """The request body is too large."""

    status, code = 413, "payload_too_large"


class NotOnWhatsApp(ZapmuxError):
    """That number is not on WhatsApp; nothing was sent."""

    status, code = 422, "not_on_whatsapp"


class NewContactRestricted(ZapmuxError):
    """WhatsApp refused a first message to this contact (error 463); it was not sent and
    will not be retried: the contact must write to this number first."""

    status, code = 422, "new_contact_restricted"


class Unprocessable(ZapmuxError):
    """The request is well-formed but its fields do not fit together."""

    status, code = 422, "validation_error"


class NotSupported(Unprocessable):
    """The tenant's engine cannot do that."""

    code = "not_supported"


class InvalidSchedule(ZapmuxError):
    """send_at must be Unix seconds, at most a minute in the past and a year ahead."""

    status, code = 422, "invalid_send_at"


class RateLimited(ZapmuxError):
    """Too many requests; retry later."""

    status, code = 429, "rate_limited"

    def __init__(self, message: str | None = None, retry_after: float = 1.0, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after


class EngineError(ZapmuxError):
    """The WhatsApp engine failed to carry out the command."""

    status, code = 502, "engine_error"


class SendLater(EngineError):
    """The engine could not send now but may soon (throttled, network down): the
    message waits in the tenant's queue and is tried again after ``retry_after``."""

    code = "send_later"

    def __init__(self, message: str | None = None, retry_after: float = 1.0, **details: Any):
        super().__init__(message, **details)
        self.retry_after = retry_after
