from django.contrib import admin
from django.urls import path, reverse_lazy
from django.views.generic import RedirectView

from registrations import views

urlpatterns = [
    path("twilio/sms/", views.sms_webhook, name="twilio-sms"),
    path("twilio/status/", views.status_callback, name="twilio-status"),
    path("healthz", views.healthz, name="healthz"),
    path("metrics", views.metrics, name="metrics"),
    path("admin/", admin.site.urls),
    # Single sign-on (answers 404 unless it is configured); the provider must know the
    # callback's address: https://<host>/oidc/callback/
    path("oidc/authenticate/", views.SsoStart.as_view(), name="oidc_authentication_init"),
    path("oidc/callback/", views.SsoCallback.as_view(), name="oidc_authentication_callback"),
    # There is no public site: the address someone types first leads to the dashboard
    # (through the admin login).
    path(
        "",
        RedirectView.as_view(url=reverse_lazy("admin:registrations_session_dashboard")),
        name="home",
    ),
]
