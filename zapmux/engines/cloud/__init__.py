"""Meta's official WhatsApp Cloud API as an engine (``ZAPMUX_CLOUD_API_URL``).

There is no socket and no pairing: a tenant's credentials (phone number id, access
token, app secret, verify token) are stored with it, "connecting" is asking Graph for
the number (``GET /{phone-number-id}``), sending is ``POST /{phone-number-id}/messages``,
and what arrives comes through one signed webhook for every cloud tenant
(``api/cloud.py`` → :meth:`CloudEngine.receive`).
"""

from zapmux.engines.cloud.engine import CloudEngine, CloudSession

__all__ = ["CloudEngine", "CloudSession"]
