"""Small values: phones, JIDs, tenant ids, backoff, signatures, settings."""

from __future__ import annotations

import hashlib
import hmac
import random
import time
from pathlib import Path

import pytest

from zapmux.backoff import Backoff
from zapmux.config import Settings
from zapmux.errors import InvalidPhone, InvalidTenantId
from zapmux.ids import empresa_id, validate_tenant_id
from zapmux.outbox import RetryPolicy, sign
from zapmux.phone import JID, ninth_digit_variants, normalize_phone
from zapmux.store.records import Delivery


@pytest.mark.parametrize(
    ("raw", "digits"),
    [
        ("5511999999999", "5511999999999"),
        ("+55 (11) 99999-9999", "5511999999999"),
        (5511999999999, "5511999999999"),
        ("5511999999999@s.whatsapp.net", "5511999999999"),
        ("1 415 555 0100", "14155550100"),
    ],
)
def test_phone_normalizes(raw: object, digits: str) -> None:
    assert normalize_phone(raw) == digits


@pytest.mark.parametrize(
    "raw", ["", "abc", "123", "5511-abc-9999", "1" * 16, "٥٥١١٩٩٩٩٩٩٩٩٩", None, True, 1.5, []]
)
def test_bad_phones_are_refused(raw: object) -> None:
    with pytest.raises(InvalidPhone):
        normalize_phone(raw)


def test_ninth_digit_variants_both_ways() -> None:
    assert ninth_digit_variants("5511988887777") == ["5511988887777", "551188887777"]
    assert ninth_digit_variants("551188887777") == ["551188887777", "5511988887777"]
    assert ninth_digit_variants("551133334444") == ["551133334444"]  # a landline has no 9
    assert ninth_digit_variants("14155550100") == ["14155550100"]


@pytest.mark.parametrize(
    "text", ["5511999999999@s.whatsapp.net", "5511999999999:12@s.whatsapp.net", "1203630@g.us"]
)
def test_jid_round_trips(text: str) -> None:
    assert str(JID.parse(text)) == text


def test_jid_group_flag() -> None:
    assert JID.parse("1203630@g.us").is_group and not JID.parse("5511999999999").is_group


@pytest.mark.parametrize("good", ["1", "empresa_1", "a.b-c", "A" * 64, "_x", 365])
def test_valid_tenant_ids(good: object) -> None:
    assert validate_tenant_id(good) == str(good)


@pytest.mark.parametrize(
    "bad",
    [
        "",
        ".",
        "..",
        ".hidden",
        "-x",
        "a/b",
        "a\\b",
        "a b",
        "a\x00",
        "A" * 65,
        "é",
        None,
        True,
        -1,
        1.5,
    ],
)
def test_invalid_tenant_ids(bad: object) -> None:
    with pytest.raises(InvalidTenantId):
        validate_tenant_id(bad)


def test_empresa_id_is_a_number_only_for_digits() -> None:
    assert empresa_id("365") == 365 and empresa_id("loja-1") == "loja-1"


def test_empresa_id_is_a_number_only_when_it_prints_back_as_the_id() -> None:
    """Tenant "0001" must not reach Flask as empresa_id 1, which is tenant "1"'s."""
    assert empresa_id("1") == 1 and empresa_id("0") == 0
    for tenant in ("0001", "01", "00", "007"):
        assert empresa_id(tenant) == tenant
    assert empresa_id("0001") != empresa_id("1")


def test_backoff_is_full_jitter_within_the_cap() -> None:
    backoff, rng = Backoff(base=1, cap=60), random.Random(7)
    assert [backoff.ceiling(n) for n in (1, 2, 3, 7, 8, 50)] == [1, 2, 4, 60, 60, 60]
    delays = [backoff.delay(10, rng) for _ in range(500)]
    assert 0 <= min(delays) < 5 and 55 < max(delays) <= 60


def test_retry_policy_decisions() -> None:
    policy = RetryPolicy(Backoff(1, 300), max_age_s=3600)
    fresh = Delivery(
        delivery_id="d",
        event="message",
        target="flask",
        body="{}",
        chat_key="c",
        created_at=time.time(),
    )
    assert policy.decide(fresh, 1, 204).status == "delivered"
    for status in (None, 408, 429, 500, 503):
        assert policy.decide(fresh, 1, status).status == "pending"
    for status in (400, 401, 404, 410, 422):
        assert policy.decide(fresh, 1, status).status == "dead"
    old = Delivery(
        delivery_id="d", event="message", target="flask", body="{}", chat_key="c", created_at=0
    )
    assert policy.decide(old, 9, 503).status == "dead"  # past its maximum age
    old.replayed_at = time.time()  # a person replayed it: 24 h from now
    assert policy.decide(old, 10, 503).status == "pending"


def test_signature_is_hmac_of_timestamp_dot_body() -> None:
    expected = hmac.new(b"s3cret", b'1700000000.{"a":1}', hashlib.sha256).hexdigest()
    assert sign("s3cret", "1700000000", b'{"a":1}') == f"sha256={expected}"


def test_settings_defaults(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert (s.host, s.port, s.engine, s.flask_url) == (
        "127.0.0.1",
        4000,
        "whatsmeow",
        "http://127.0.0.1:5000",
    )
    assert s.auth_dir == Path("auth") and s.store_url == "sqlite:///data/zapmux.db"
    assert s.send_rate_per_minute == 20 and s.send_burst == 5 and s.start_concurrency == 8


def test_settings_honour_the_seed_names(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    monkeypatch.setenv("FLASK_URL", "http://flask:5000/")
    monkeypatch.setenv("PORT", "4100")
    monkeypatch.setenv("AUTH_DIR", "/var/auth")
    s = Settings()
    assert (s.flask_url, s.port, s.auth_dir) == ("http://flask:5000", 4100, Path("/var/auth"))
    monkeypatch.setenv("ZAPMUX_PORT", "4200")
    assert Settings().port == 4200  # the zapmux name wins over the seed's


def test_settings_read_a_dotenv_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    (tmp_path / ".env").write_text("ZAPMUX_ENGINE=sandbox\nZAPMUX_API_KEY=k\n")
    s = Settings()
    assert s.engine == "sandbox" and s.api_key == "k"


def test_no_key_means_loopback_only(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.chdir(tmp_path)
    s = Settings()
    assert s.binding_refusal("127.0.0.1") is None and s.binding_refusal("::1") is None
    assert s.binding_refusal("localhost") is None
    assert "ZAPMUX_API_KEY" in (s.binding_refusal("0.0.0.0") or "")
    assert Settings(api_key="k").binding_refusal("0.0.0.0") is None  # type: ignore[call-arg]
