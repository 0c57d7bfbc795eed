"""Only requests Twilio signed with our auth token, for the URL it called, reach the webhook."""

from __future__ import annotations

import pytest

from registrations.models import Account, InboundMessage
from tests.conftest import PUBLIC_BASE_URL, sign, twilio_params

URL = PUBLIC_BASE_URL + "/twilio/sms/"


@pytest.fixture
def params(open_session) -> dict:
    return twilio_params("python lab 3")


def assert_refused(response) -> None:
    assert response.status_code == 403
    assert InboundMessage.objects.count() == 0
    assert Account.objects.count() == 0


def test_missing_signature_is_refused_and_logged_without_the_body(
    client, twilio_settings, params, caplog
):
    assert_refused(client.post("/twilio/sms/", params))
    assert "missing X-Twilio-Signature" in caplog.text
    assert "python lab 3" not in caplog.text
    assert params["From"] not in caplog.text


def test_garbage_signature_is_refused(client, twilio_settings, params):
    assert_refused(client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE="bm90IGEgc2ln"))


def test_signature_made_with_another_accounts_token_is_refused(client, twilio_settings, params):
    forged = sign(URL, params, token="someone-elses-auth-token")

    assert_refused(client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=forged))


def test_replayed_signature_with_a_changed_body_is_refused(client, twilio_settings, params):
    signature = sign(URL, params)
    tampered = {**params, "Body": "python lab 4"}

    assert_refused(client.post("/twilio/sms/", tampered, HTTP_X_TWILIO_SIGNATURE=signature))


def test_replayed_signature_with_an_added_field_is_refused(client, twilio_settings, params):
    signature = sign(URL, params)
    tampered = {**params, "Extra": "1"}

    assert_refused(client.post("/twilio/sms/", tampered, HTTP_X_TWILIO_SIGNATURE=signature))


def test_signature_for_another_url_is_refused(client, twilio_settings, params):
    signature = sign("https://elsewhere.example.test/twilio/sms/", params)

    assert_refused(client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature))


def test_signature_covers_the_query_string_of_the_public_url(client, twilio_settings, params):
    signed_url = URL + "?pool=north&x=1"

    unsigned_query = client.post(
        "/twilio/sms/?pool=north&x=1", params, HTTP_X_TWILIO_SIGNATURE=sign(URL, params)
    )
    assert_refused(unsigned_query)
    accepted = client.post(
        "/twilio/sms/?pool=north&x=1", params, HTTP_X_TWILIO_SIGNATURE=sign(signed_url, params)
    )
    assert accepted.status_code == 200
    assert InboundMessage.objects.count() == 1


@pytest.fixture
def behind_proxy(twilio_settings):
    twilio_settings.PUBLIC_BASE_URL = ""
    twilio_settings.USE_X_FORWARDED_HOST = True
    twilio_settings.ALLOWED_HOSTS = ["sms.school.example"]
    return {"HTTP_X_FORWARDED_PROTO": "https", "HTTP_X_FORWARDED_HOST": "sms.school.example"}


def test_without_public_base_url_the_proxy_headers_give_the_url(client, behind_proxy, params):
    signature = sign("https://sms.school.example/twilio/sms/", params)

    response = client.post(
        "/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature, **behind_proxy
    )

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


def test_without_public_base_url_a_signature_for_plain_http_is_refused(
    client, behind_proxy, params
):
    signature = sign("http://sms.school.example/twilio/sms/", params)

    assert_refused(
        client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=signature, **behind_proxy)
    )


def test_debug_without_a_token_skips_validation_loudly(client, twilio_settings, params, caplog):
    twilio_settings.TWILIO_AUTH_TOKEN = ""
    twilio_settings.DEBUG = True

    response = client.post("/twilio/sms/", params)

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1
    assert "UNSIGNED" in caplog.text


def test_no_token_without_debug_refuses_everything(client, twilio_settings, params, caplog):
    twilio_settings.TWILIO_AUTH_TOKEN = ""

    assert_refused(client.post("/twilio/sms/", params, HTTP_X_TWILIO_SIGNATURE=sign(URL, params)))
    assert "TWILIO_AUTH_TOKEN is unset" in caplog.text


def test_debug_with_a_token_still_validates(client, twilio_settings, params):
    twilio_settings.DEBUG = True

    assert_refused(client.post("/twilio/sms/", params))
