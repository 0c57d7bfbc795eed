from __future__ import annotations

from django.apps import AppConfig


class RegistrationsConfig(AppConfig):
    name = "registrations"
    verbose_name = "Classroom SMS"
    default_auto_field = "django.db.models.BigAutoField"

    def ready(self) -> None:
        from registrations import checks, signals  # noqa: F401  (registers checks and handlers)
