"""System checks: warn (never fail) when Twilio or Coder settings are missing."""

from __future__ import annotations

from django.conf import settings
from django.core.checks import Warning, register


def missing_twilio_settings() -> list[str]:
    missing = [
        name for name in ("TWILIO_ACCOUNT_SID", "TWILIO_AUTH_TOKEN") if not getattr(settings, name)
    ]
    if not (settings.TWILIO_FROM_NUMBER or settings.TWILIO_MESSAGING_SERVICE_SID):
        missing.append("TWILIO_FROM_NUMBER or TWILIO_MESSAGING_SERVICE_SID")
    return missing


def missing_coder_settings() -> list[str]:
    return [name for name in ("CODER_URL", "CODER_SESSION_TOKEN") if not getattr(settings, name)]


@register()
def check_integrations(app_configs: object = None, **kwargs: object) -> list[Warning]:
    warnings = []
    if missing := missing_twilio_settings():
        warnings.append(
            Warning(
                f"Twilio is not configured: {', '.join(missing)} unset.",
                hint="Students' texts are recorded, but no SMS can be sent until it is set.",
                id="registrations.W001",
            )
        )
    if missing := missing_coder_settings():
        warnings.append(
            Warning(
                f"Coder is not configured: {', '.join(missing)} unset.",
                hint="Accounts cannot be created or deleted in Coder until it is set.",
                id="registrations.W002",
            )
        )
    if not settings.PUBLIC_BASE_URL:
        warnings.append(
            Warning(
                "PUBLIC_BASE_URL is not set.",
                hint="Set it to the https URL Twilio calls; it is needed to check Twilio's "
                "signatures behind a proxy and to build status-callback URLs.",
                id="registrations.W003",
            )
        )
    return warnings
