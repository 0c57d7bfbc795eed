"""WSGI entry point (gunicorn classroom_sms.wsgi)."""

import os

from django.core.wsgi import get_wsgi_application

os.environ.setdefault("DJANGO_SETTINGS_MODULE", "classroom_sms.settings")
application = get_wsgi_application()

# Before the first request: what a process does once must not land on a class burst.
from registrations import warmup  # noqa: E402

warmup.web()
