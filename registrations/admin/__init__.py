"""Django admin for instructors and admins; each module registers its models."""

from django.contrib import admin
from django.urls import reverse_lazy

from registrations.admin import accounts, classrooms, logs, sessions  # noqa: F401
from registrations.security import RateLimitedAdminLoginForm

# Failed logins are counted per username and client address (registrations.security).
admin.site.login_form = RateLimitedAdminLoginForm
# The header names the product; "View site" opens the dashboard (the app has no public site).
admin.site.site_header = "Classroom SMS"
admin.site.site_title = "Classroom SMS"
admin.site.index_title = "Classes, sessions and students"
# Lazy: the URLconf is not loaded yet. Django only compares site_url with "/" and renders it,
# which a lazy string does as well; django-stubs types it str | None (unlike site_title).
admin.site.site_url = reverse_lazy("admin:registrations_session_dashboard")  # type: ignore[assignment]
