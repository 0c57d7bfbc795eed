"""System checks: warn (never fail) when Twilio or Coder settings are missing, or when the
admin's login methods would let nobody in."""

from __future__ import annotations

import sys
from pathlib import Path

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


# The language the texts are written in: it needs no catalogue.
SOURCE_LANGUAGE = "en"


def uncompiled_languages() -> list[str]:
    """The student languages whose catalogue is not compiled, or is older than its .po."""
    return [
        code
        for code, _ in settings.STUDENT_LANGUAGES
        if code != SOURCE_LANGUAGE
        and not any(_compiled(Path(base) / code / "LC_MESSAGES") for base in settings.LOCALE_PATHS)
    ]


def _compiled(folder: Path) -> bool:
    mo, po = folder / "django.mo", folder / "django.po"
    return mo.is_file() and (not po.is_file() or mo.stat().st_mtime >= po.stat().st_mtime)


@register()
def check_translations(app_configs: object = None, **kwargs: object) -> list[Warning]:
    """Warn when a student language would silently fall back to English."""
    missing = uncompiled_languages()
    if not missing:
        return []
    return [
        Warning(
            f"The translations of students' SMS are not compiled, or older than their .po: "
            f"{', '.join(missing)}.",
            hint="Run `make messages` (pybabel compile -d locale -D django). Until then, "
            "students of sessions in these languages get their SMS in English.",
            id="registrations.W004",
        )
    ]


# Commands whose output is about the app's health: they report the integration warnings.
# Every other command (migrate, qcluster, collectstatic, createinstructor, ...) runs Django's
# system checks too; repeating the same three warnings there on every run only buries output.
REPORTING_COMMANDS = frozenset({"check", "runserver"})
_COMMAND_LINE_TOOLS = frozenset({"manage.py", "django-admin", "__main__.py"})


def running_command(argv: list[str] | None = None) -> str | None:
    """The management command this process runs (`manage.py migrate` -> "migrate"), or None
    when it is not a management command (gunicorn, pytest, a script calling call_command)."""
    argv = sys.argv if argv is None else argv
    if len(argv) > 1 and Path(argv[0]).name in _COMMAND_LINE_TOOLS:
        return argv[1]
    return None


@register()
def check_integrations_when_reporting(
    app_configs: object = None, **kwargs: object
) -> list[Warning]:
    """The integration warnings, for `check` and `runserver` only (and outside manage.py)."""
    command = running_command()
    if command is not None and command not in REPORTING_COMMANDS:
        return []
    return check_integrations(app_configs, **kwargs)


@register()
def check_login_methods(app_configs: object = None, **kwargs: object) -> list[Warning]:
    """Warn, on every command, when nobody could log into the admin or SSO lets nobody in."""
    warnings = []
    if not settings.PASSWORD_LOGIN and not settings.OIDC_ENABLED:
        warnings.append(
            Warning(
                "PASSWORD_LOGIN is off and single sign-on is not configured: nobody can log "
                "into the admin.",
                hint="Set OIDC_RP_CLIENT_ID, OIDC_RP_CLIENT_SECRET and OIDC_OP_ISSUER, or "
                "PASSWORD_LOGIN=1. Management commands still work.",
                id="registrations.W010",
            )
        )
    if settings.OIDC_ENABLED and not (
        settings.OIDC_INSTRUCTOR_GROUPS or settings.OIDC_ADMIN_GROUPS
    ):
        warnings.append(
            Warning(
                "Single sign-on is configured but neither OIDC_INSTRUCTOR_GROUPS nor "
                "OIDC_ADMIN_GROUPS is set: every single sign-on login will be refused.",
                hint="Name the provider's groups (in the OIDC_GROUPS_CLAIM claim) whose "
                "members are instructors or admins.",
                id="registrations.W011",
            )
        )
    return warnings
