"""System checks warn about missing Twilio/Coder settings without stopping the app."""

from __future__ import annotations

from registrations.checks import check_integrations


def ids(warnings) -> set[str]:
    return {warning.id for warning in warnings}


def test_missing_twilio_and_coder_settings_are_warnings(settings):
    settings.TWILIO_ACCOUNT_SID = settings.TWILIO_AUTH_TOKEN = ""
    settings.CODER_URL = settings.CODER_SESSION_TOKEN = ""
    warnings = check_integrations()
    assert {"registrations.W001", "registrations.W002"} <= ids(warnings)
    assert all(warning.level == 30 for warning in warnings)  # WARNING, never ERROR


def test_warning_names_the_missing_variables(settings):
    settings.TWILIO_ACCOUNT_SID = "AC123"
    settings.TWILIO_AUTH_TOKEN = ""
    settings.TWILIO_FROM_NUMBER = ""
    settings.TWILIO_MESSAGING_SERVICE_SID = ""
    (twilio,) = [w for w in check_integrations() if w.id == "registrations.W001"]
    assert "TWILIO_AUTH_TOKEN" in twilio.msg
    assert "TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID" in twilio.msg
    assert "TWILIO_ACCOUNT_SID" not in twilio.msg


def test_fully_configured_app_has_no_integration_warnings(settings):
    settings.TWILIO_ACCOUNT_SID = "AC123"
    settings.TWILIO_AUTH_TOKEN = "token"
    settings.TWILIO_MESSAGING_SERVICE_SID = "MG123"
    settings.CODER_URL = "https://coder.example.edu"
    settings.CODER_SESSION_TOKEN = "token"
    settings.PUBLIC_BASE_URL = "https://sms.example.edu"
    assert check_integrations() == []
