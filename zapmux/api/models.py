"""Request bodies. The seed's spellings (``tenantId``) are accepted beside snake_case."""

from __future__ import annotations

import math
from typing import Annotated, Any, Literal, Self

from pydantic import (
    AliasChoices,
    BaseModel,
    ConfigDict,
    Field,
    StrictBool,
    StrictFloat,
    StrictInt,
    StringConstraints,
    field_validator,
    model_validator,
)

from zapmux.config import EngineName
from zapmux.optouts import normalize

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


# An answer of a question: trimmed, 1-100 characters (WhatsApp's limit for a poll option).
Option = Annotated[str, StringConstraints(strip_whitespace=True, min_length=1, max_length=100)]


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
    options: list[Option] | None = Field(
        None,
        min_length=2,
        max_length=12,
        description="a question with answers: `message` is the question (a poll on WhatsApp)",
    )
    send_at: StrictInt | StrictFloat | None = Field(
        None, description="Unix seconds: send then (202 `scheduled`), at most a year ahead"
    )

    @field_validator("options")
    @classmethod
    def _distinct(cls, options: list[str] | None) -> list[str] | None:
        if options is not None and len({normalize(o) for o in options}) < len(options):
            raise ValueError("options must be distinct (ignoring case and accents)")
        return options

    @field_validator("send_at")
    @classmethod
    def _finite(cls, send_at: float | None) -> float | None:
        if send_at is not None and not math.isfinite(send_at):
            raise ValueError("send_at must be a number of Unix seconds")
        return send_at

    @model_validator(mode="after")
    def _question(self) -> Self:
        if self.options is not None:
            if not (self.message or "").strip():
                raise ValueError("a question with options needs the question in message")
            if any((self.image, self.document, self.audio, self.video)):
                raise ValueError("a question with options cannot carry media")
            if self.template is not None:
                raise ValueError("a question with options cannot be a template")
        return self


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


class VoteBody(Body):
    sender: Phone = Field(validation_alias=AliasChoices("from", "sender", "phone"))
    tenant_id: TenantId = Field(
        validation_alias=AliasChoices("tenant_id", "tenantId", "empresa_id")
    )
    message_id: str = Field(max_length=128, description="the question, as the phone received it")
    options: list[str] = Field(
        max_length=12, description="the chosen answer(s); [] takes the vote back"
    )


class OptOutKeywordsBody(Body):
    model_config = ConfigDict(populate_by_name=True, extra="forbid")
    keywords: list[str] | None = Field(
        max_length=50, description="null: the defaults; []: opt-outs off for this tenant"
    )


class FaultBody(Body):
    kind: Literal["disconnect", "network_down", "network_up", "logout", "replace", "ban"]
