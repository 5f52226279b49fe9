"""Settings, read once from the environment (and `.env`), passed down as one object.

Every name has the prefix ``ZAPMUX_``; the old Node.js server's names (``FLASK_URL``,
``PORT``, ``AUTH_DIR``) are honoured as aliases so its deployments keep working.
"""

from __future__ import annotations

import ipaddress
from pathlib import Path
from typing import Literal, get_args

from pydantic import AliasChoices, Field, field_validator
from pydantic_settings import BaseSettings, SettingsConfigDict

EngineName = Literal["whatsmeow", "sandbox", "cloud"]
ENGINE_NAMES: tuple[str, ...] = get_args(EngineName)
CLOUD_API_URL = "https://graph.facebook.com/v23.0"


def _env(name: str, *aliases: str) -> AliasChoices:
    return AliasChoices(f"ZAPMUX_{name}", *aliases)


class Settings(BaseSettings):
    """Everything zapmux can be told. Defaults are the secure, single-node ones."""

    model_config = SettingsConfigDict(
        env_file=".env", env_file_encoding="utf-8", extra="ignore", populate_by_name=True
    )

    host: str = Field("127.0.0.1", validation_alias=_env("HOST"))
    port: int = Field(4000, ge=1, le=65535, validation_alias=_env("PORT", "PORT"))
    engine: EngineName = Field("whatsmeow", validation_alias=_env("ENGINE"))
    flask_url: str = Field("http://127.0.0.1:5000", validation_alias=_env("FLASK_URL", "FLASK_URL"))
    auth_dir: Path = Field(Path("auth"), validation_alias=_env("AUTH_DIR", "AUTH_DIR"))
    data_dir: Path = Field(Path("data"), validation_alias=_env("DATA_DIR"))
    database_url: str | None = Field(None, validation_alias=_env("DATABASE_URL"))
    api_key: str | None = Field(None, validation_alias=_env("API_KEY"))
    webhook_secret: str | None = Field(None, validation_alias=_env("WEBHOOK_SECRET"))
    log_format: Literal["pretty", "json"] = Field("pretty", validation_alias=_env("LOG_FORMAT"))
    log_level: str = Field("INFO", validation_alias=_env("LOG_LEVEL"))
    node_id: str | None = Field(None, validation_alias=_env("NODE_ID"))
    advertise_url: str | None = Field(None, validation_alias=_env("ADVERTISE_URL"))

    # Lifecycle
    start_concurrency: int = Field(8, ge=1, validation_alias=_env("START_CONCURRENCY"))
    reconnect_base_s: float = Field(1.0, gt=0, validation_alias=_env("RECONNECT_BASE_S"))
    reconnect_cap_s: float = Field(60.0, gt=0, validation_alias=_env("RECONNECT_CAP_S"))
    stable_after_s: float = Field(60.0, ge=0, validation_alias=_env("STABLE_AFTER_S"))
    whatsmeow_proxy: str | None = Field(None, validation_alias=_env("WHATSMEOW_PROXY"))
    # neonize marks every message to a person as sent by a bot ("AI" label) unless
    # NEONIZE_BOT_TAG=off reaches its worker; zapmux sends it off unless this is on.
    whatsmeow_bot_tag: bool = Field(False, validation_alias=_env("WHATSMEOW_BOT_TAG"))
    # a connected worker above this is replaced by a fresh one once its tenant is idle
    whatsmeow_worker_max_rss_mb: int | None = Field(
        300, ge=1, validation_alias=_env("WHATSMEOW_WORKER_MAX_RSS_MB")
    )
    sandbox_qr_seconds: float = Field(20.0, gt=0, validation_alias=_env("SANDBOX_QR_SECONDS"))
    cloud_api_url: str = Field(CLOUD_API_URL, validation_alias=_env("CLOUD_API_URL"))
    cloud_timeout_s: float = Field(20.0, gt=0, validation_alias=_env("CLOUD_TIMEOUT_S"))

    # Sending
    send_rate_per_minute: float = Field(20.0, ge=0, validation_alias=_env("SEND_RATE_PER_MINUTE"))
    send_burst: int = Field(5, ge=1, validation_alias=_env("SEND_BURST"))
    send_queue_max: int = Field(1000, ge=1, validation_alias=_env("SEND_QUEUE_MAX"))
    jid_cache_ttl_s: float = Field(86400.0, ge=0, validation_alias=_env("JID_CACHE_TTL_S"))
    media_allow_private: bool = Field(False, validation_alias=_env("MEDIA_ALLOW_PRIVATE"))
    media_max_bytes: int = Field(16 * 1024 * 1024, ge=1, validation_alias=_env("MEDIA_MAX_BYTES"))

    # Webhook delivery
    delivery_concurrency: int = Field(16, ge=1, validation_alias=_env("DELIVERY_CONCURRENCY"))
    delivery_timeout_s: float = Field(10.0, gt=0, validation_alias=_env("DELIVERY_TIMEOUT_S"))
    delivery_max_age_s: float = Field(86400.0, gt=0, validation_alias=_env("DELIVERY_MAX_AGE_S"))
    delivery_backoff_base_s: float = Field(
        1.0, gt=0, validation_alias=_env("DELIVERY_BACKOFF_BASE_S")
    )
    delivery_backoff_cap_s: float = Field(
        300.0, gt=0, validation_alias=_env("DELIVERY_BACKOFF_CAP_S")
    )
    delivered_retention_s: float = Field(
        7 * 86400.0, gt=0, validation_alias=_env("DELIVERED_RETENTION_S")
    )
    webhook_allowed_hosts: str | None = Field(None, validation_alias=_env("WEBHOOK_ALLOWED_HOSTS"))

    # Scale-out
    lease_seconds: float = Field(15.0, gt=0, validation_alias=_env("LEASE_SECONDS"))

    @field_validator("flask_url", "cloud_api_url")
    @classmethod
    def _strip_slash(cls, value: str) -> str:
        return value.rstrip("/")

    @property
    def store_url(self) -> str:
        """The database URL: the configured one, else SQLite inside the data directory."""
        return self.database_url or f"sqlite:///{self.data_dir / 'zapmux.db'}"

    @property
    def allowed_webhook_hosts(self) -> frozenset[str]:
        raw = self.webhook_allowed_hosts or ""
        return frozenset(h.strip().lower() for h in raw.split(",") if h.strip())

    def binding_refusal(self, host: str) -> str | None:
        """Why this host may not be bound with these settings, or None when it may."""
        if self.api_key or is_loopback(host):
            return None
        return (
            f"refusing to listen on {host}: no ZAPMUX_API_KEY is set, so zapmux only "
            "binds a loopback address (set ZAPMUX_API_KEY to expose it)"
        )


def is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host.strip("[]")).is_loopback
    except ValueError:
        return False
