"""Signature edge cases beyond tests/test_webhook_signature.py: slashes, repeated fields, proxies,
ports, and signatures replayed onto other fields, messages or endpoints."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path
from urllib.parse import urlencode

import pytest

from registrations.models import Account, InboundMessage, OutboundMessage, OutboundStatus
from tests.conftest import OUR_NUMBER, PUBLIC_BASE_URL, STUDENT_PHONE, sign, twilio_params

URL = PUBLIC_BASE_URL + "/twilio/sms/"
FORM = "application/x-www-form-urlencoded"


@pytest.fixture
def params(open_session, twilio_settings) -> dict:
    return twilio_params("python lab 3")


def assert_nothing_stored() -> None:
    assert not InboundMessage.objects.exists()
    assert not Account.objects.exists()


def post_pairs(client, pairs: list[tuple[str, str]], signature: str, path: str = "/twilio/sms/"):
    """Post form fields in this exact order, repeats included, as raw bytes."""
    return client.generic(
        "POST", path, urlencode(pairs).encode(), content_type=FORM,
        HTTP_X_TWILIO_SIGNATURE=signature,
    )


def test_post_without_the_trailing_slash_is_redirected_not_served(client, params):
    response = client.post("/twilio/sms", params, HTTP_X_TWILIO_SIGNATURE=sign(URL, params))

    assert response.status_code == 301
    assert response["Location"] == "/twilio/sms/"
    assert_nothing_stored()


def test_signature_over_the_url_without_the_slash_is_refused(client, params):
    signature = sign(URL.rstrip("/"), params)

    assert client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code \
        == 403
    assert_nothing_stored()


def test_public_base_url_with_a_trailing_slash_is_normalised():
    environment = {k: v for k, v in os.environ.items() if k not in ("DATABASE_URL", "REDIS_URL")}
    environment.update(DJANGO_SETTINGS_MODULE="classroom_sms.settings", ENV_FILE="",
                       SECRET_KEY="x", PUBLIC_BASE_URL="https://sms.example.test/")
    probe = "import django; django.setup(); from django.conf import settings; " \
            "print(settings.PUBLIC_BASE_URL)"
    done = subprocess.run([sys.executable, "-c", probe], cwd=Path(__file__).parent.parent,
                          env=environment, capture_output=True, text=True, check=True)

    assert done.stdout.strip() == PUBLIC_BASE_URL


@pytest.mark.parametrize("field", ["Body", "From", "To", "MessageSid"])
def test_a_repeated_field_is_refused_even_when_signed(client, params, field):
    # Twilio sorts repeated values before signing, while Django reads the last one: a
    # captured request with its repeats reordered would keep its signature but change meaning.
    pairs = [*params.items(), (field, params[field] + "0")]

    response = post_pairs(client, pairs, sign(URL, _multi(pairs)))

    assert response.status_code == 400
    assert_nothing_stored()


def test_repeated_values_reordered_keep_their_signature_so_repeats_cannot_be_trusted(params):
    first = [*params.items(), ("Body", "rust lab")]
    reordered = [(k, v) for k, v in params.items() if k != "Body"]
    reordered += [("Body", "rust lab"), ("Body", params["Body"])]

    assert sign(URL, _multi(first)) == sign(URL, _multi(reordered))


def test_a_signature_covering_one_value_of_a_repeated_field_is_refused(client, params):
    pairs = [*params.items(), ("Extra", "1"), ("Extra", "2")]
    signature = sign(URL, _multi([*params.items(), ("Extra", "1")]))

    assert post_pairs(client, pairs, signature).status_code == 403
    assert_nothing_stored()


@pytest.mark.parametrize(
    ("field", "value"),
    [("MessageSid", "SM" + "9" * 32), ("From", "+14155550999"), ("To", "+14155550998"),
     ("NumSegments", "2")],
)
def test_a_valid_signature_replayed_with_another_field_changed_is_refused(
    client, params, field, value
):
    signature = sign(URL, params)

    response = client.post("/twilio/sms/", {**params, field: value},
                           HTTP_X_TWILIO_SIGNATURE=signature)

    assert response.status_code == 403
    assert_nothing_stored()


def test_a_status_callback_signature_is_refused_by_the_sms_webhook(client, params):
    signature = sign(PUBLIC_BASE_URL + "/twilio/status/", params)

    assert client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code \
        == 403
    assert_nothing_stored()


def test_a_callback_signature_replayed_for_another_message_is_refused(
    client, twilio_settings, open_session
):
    mine, other = (
        OutboundMessage.objects.create(phone=STUDENT_PHONE, kind="test", body="x",
                                       status=OutboundStatus.QUEUED)
        for _ in range(2)
    )
    fields = {"MessageStatus": "delivered", "MessageSid": "SM" + "4" * 32}
    signature = sign(f"{PUBLIC_BASE_URL}/twilio/status/?m={mine.public_id}", fields)

    response = client.post(f"/twilio/status/?m={other.public_id}", fields,
                           HTTP_X_TWILIO_SIGNATURE=signature)

    assert response.status_code == 403
    other.refresh_from_db()
    assert other.status == OutboundStatus.QUEUED


def test_a_signature_with_the_explicit_default_port_is_accepted(client, params):
    # Twilio's validator accepts the URL with and without :443, as Twilio may sign either.
    signature = sign("https://sms.example.test:443/twilio/sms/", params)

    assert client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature).status_code \
        == 200


@pytest.fixture
def no_public_url(twilio_settings):
    twilio_settings.PUBLIC_BASE_URL = ""
    twilio_settings.ALLOWED_HOSTS = ["sms.school.example", "proxy.internal"]
    return twilio_settings


def test_without_the_proto_header_https_signatures_fail_closed_and_say_why(
    client, no_public_url, params, caplog
):
    # The proxy forgot X-Forwarded-Proto: Django sees http, Twilio signed https.
    signature = sign("https://sms.school.example/twilio/sms/", params)

    response = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature,
                           HTTP_HOST="sms.school.example")

    assert response.status_code == 403
    assert_nothing_stored()
    assert "does not match http://sms.school.example/twilio/sms/" in caplog.text


def test_forwarded_host_is_ignored_unless_trusted(client, no_public_url, params):
    no_public_url.USE_X_FORWARDED_HOST = False
    headers = {"HTTP_HOST": "proxy.internal", "HTTP_X_FORWARDED_HOST": "sms.school.example",
               "HTTP_X_FORWARDED_PROTO": "https"}

    forged = sign("https://sms.school.example/twilio/sms/", params)
    assert client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=forged,
                       **headers).status_code == 403
    real = sign("https://proxy.internal/twilio/sms/", params)
    assert client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=real,
                       **headers).status_code == 200


def test_with_public_base_url_set_proxy_headers_cannot_change_the_signed_url(client, params,
                                                                             twilio_settings):
    twilio_settings.USE_X_FORWARDED_HOST = True
    twilio_settings.ALLOWED_HOSTS = ["sms.example.test", "evil.example"]
    forged = sign("https://evil.example/twilio/sms/", params)

    response = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=forged,
                           HTTP_X_FORWARDED_HOST="evil.example", HTTP_X_FORWARDED_PROTO="https")

    assert response.status_code == 403
    assert_nothing_stored()


def test_with_public_base_url_set_a_plain_http_hop_still_validates(client, params):
    # PUBLIC_BASE_URL, not the scheme of the last hop, is what Twilio signed.
    response = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(URL, params),
                           HTTP_X_FORWARDED_PROTO="http")

    assert response.status_code == 200
    assert Account.objects.count() == 1


def test_ssl_redirect_answers_plain_http_before_anything_is_stored(client, params,
                                                                   twilio_settings):
    twilio_settings.SECURE_SSL_REDIRECT = True
    signature = sign(URL, params)

    plain = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature)
    assert plain.status_code == 301
    assert plain["Location"].startswith("https://")
    assert_nothing_stored()

    proxied = client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature,
                          HTTP_X_FORWARDED_PROTO="https")
    assert proxied.status_code == 200
    assert InboundMessage.objects.get().to_number == OUR_NUMBER


def _multi(pairs: list[tuple[str, str]]):
    from django.http import QueryDict

    return QueryDict(urlencode(pairs))
