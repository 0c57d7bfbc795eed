from django.contrib import admin
from django.urls import path

from registrations import views

urlpatterns = [
    path("twilio/sms/", views.sms_webhook, name="twilio-sms"),
    path("twilio/status/", views.status_callback, name="twilio-status"),
    path("healthz", views.healthz, name="healthz"),
    path("admin/", admin.site.urls),
]
