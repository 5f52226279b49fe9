"""Request bodies. The seed's spellings (``tenantId``) are accepted beside snake_case."""

from __future__ import annotations

from typing import Any, Literal

from pydantic import AliasChoices, BaseModel, ConfigDict, Field, StrictBool, StrictInt

from zapmux.config import EngineName

# Strict: lax mode would read true as 1 and 1.0 as 1, creating tenant "1" from a boolean.
Phone = str | StrictInt
TenantId = str | StrictInt
WebhookEvent = Literal["message", "status", "qr", "receipt", "message.sent"]


class Body(BaseModel):
    """A misspelt field is a 422, never silently ignored ({"enigne": "cloud"})."""

    model_config = ConfigDict(populate_by_name=True, extra="forbid")


class SeedBody(Body):
    """The seed's own bodies (what Flask sends to ``/send``): extra fields are ignored."""

    model_config = ConfigDict(populate_by_name=True, extra="ignore")


class CloudCredentials(Body):
    """What a cloud tenant needs at Meta (see docs/cloud.md). Never shown back."""

    phone_number_id: str = Field(min_length=1, max_length=64, pattern=r"^[0-9]+$")
    access_token: str = Field(min_length=1, max_length=4096)
    app_secret: str = Field(min_length=1, max_length=256)
    verify_token: str = Field(min_length=1, max_length=256)


class CreateTenant(Body):
    tenant_id: TenantId = Field(
        validation_alias=AliasChoices("tenant_id", "tenantId", "empresa_id")
    )
    engine: EngineName | None = Field(None, description="default: the server's (ZAPMUX_ENGINE)")
    cloud: CloudCredentials | None = Field(None, description="engine cloud: Meta's credentials")


class MediaBody(Body):
    url: str | None = Field(None, max_length=4096, description="http(s) URL to fetch the file from")
    base64: str | None = Field(None, description="the file itself, base64-encoded")
    mimetype: str | None = Field(None, max_length=128)
    filename: str | None = Field(None, max_length=255)
    caption: str | None = Field(None, max_length=4096)
    ptt: StrictBool = Field(False, description="audio only: send as a voice note")


class TemplateBody(Body):
    name: str = Field(min_length=1, max_length=512)
    language: str = Field("pt_BR", min_length=2, max_length=16)
    components: list[dict[str, Any]] = Field(default_factory=list, max_length=32)


class SendBody(SeedBody):
    phone: Phone = Field(description="digits with country code, e.g. 5511999999999")
    message: str | None = Field(
        None, max_length=65536, validation_alias=AliasChoices("message", "text")
    )
    reply_to: str | None = Field(None, max_length=128, description="a message id to quote")
    image: MediaBody | None = None
    document: MediaBody | None = None
    audio: MediaBody | None = None
    video: MediaBody | None = None
    template: TemplateBody | None = Field(None, description="cloud tenants: a template message")


class RelayBody(SeedBody):
    model_config = ConfigDict(populate_by_name=True, extra="allow")  # relayed as it came
    phone: Phone | None = None
    message: str | None = None
    message_type: str | None = "texto"
    empresa_id: TenantId | None = None


class PairCodeBody(Body):
    phone: Phone


class CheckBody(Body):
    phones: list[Phone] = Field(min_length=1, max_length=100)


class ClearAllBody(Body):
    purge_sessions: StrictBool = False


class WebhookBody(Body):
    # (A misspelt "secret" must not leave deliveries silently unsigned: see Body.)
    url: str = Field(max_length=2048)
    secret: str | None = Field(None, min_length=8, max_length=256)
    events: list[WebhookEvent] = Field(default_factory=lambda: list[WebhookEvent](["message"]))


class ScanBody(Body):
    qr: str = Field(max_length=1024)
    phone: Phone


class PairBody(Body):
    code: str = Field(max_length=32)
    phone: Phone


class PhoneMessageBody(Body):
    sender: Phone = Field(validation_alias=AliasChoices("from", "sender", "phone"))
    tenant_id: TenantId = Field(
        validation_alias=AliasChoices("tenant_id", "tenantId", "empresa_id")
    )
    text: str = Field("", max_length=65536, validation_alias=AliasChoices("text", "message"))
    media: MediaBody | None = None
    media_kind: Literal["image", "document", "audio", "video", "sticker"] | None = None
    # As WhatsApp would: a message handed over twice keeps its id (the default: a new one).
    message_id: str | None = Field(None, min_length=1, max_length=1024)


class RegisterPhoneBody(Body):
    phone: Phone
    on_whatsapp: StrictBool = True


class FaultBody(Body):
    kind: Literal["disconnect", "network_down", "network_up", "logout", "replace", "ban"]
