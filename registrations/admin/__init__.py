"""Django admin for instructors and admins; each module registers its models."""

from django.contrib import admin

from registrations.admin import accounts, classrooms, logs, sessions  # noqa: F401
from registrations.security import RateLimitedAdminLoginForm

# Failed logins are counted per username and client address (registrations.security).
admin.site.login_form = RateLimitedAdminLoginForm
