"""Read-only admin of the SMS logs, opt-outs and usage figures (phone numbers masked)."""

from __future__ import annotations

from django.contrib import admin
from django.http import HttpRequest

from registrations.admin.scoping import MESSAGE_PATHS, FilterOnlyAdmin, ModelT, ScopedAdmin
from registrations.models import Heartbeat, InboundMessage, OptOut, OutboundMessage, UsageStat
from registrations.phones import mask_phone


class ReadOnlyAdmin(FilterOnlyAdmin[ModelT]):
    """Logs are written by the app only: nobody adds, edits or deletes them here."""

    def has_add_permission(self, request: HttpRequest) -> bool:
        return False

    def has_change_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False

    def has_delete_permission(self, request: HttpRequest, obj: object = None) -> bool:
        return False


class MaskedPhoneMixin:
    @admin.display(description="phone")
    def masked_phone(self, obj: InboundMessage | OutboundMessage | OptOut) -> str:
        return mask_phone(obj.phone)


@admin.register(InboundMessage)
class InboundMessageAdmin(
    MaskedPhoneMixin, ReadOnlyAdmin[InboundMessage], ScopedAdmin[InboundMessage]
):
    classroom_paths = MESSAGE_PATHS
    list_display = ("received_at", "masked_phone", "body", "outcome", "session", "account")
    list_filter = ("outcome", ("session", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("session__classroom", "account")
    search_fields = ("body", "message_sid")
    date_hierarchy = "received_at"
    fields = (
        "message_sid",
        "received_at",
        "masked_phone",
        "to_number",
        "body",
        "outcome",
        "session",
        "account",
    )
    readonly_fields = fields


@admin.register(OutboundMessage)
class OutboundMessageAdmin(
    MaskedPhoneMixin, ReadOnlyAdmin[OutboundMessage], ScopedAdmin[OutboundMessage]
):
    classroom_paths = MESSAGE_PATHS
    list_display = (
        "created_at",
        "kind",
        "masked_phone",
        "status",
        "error_code",
        "session",
        "account",
    )
    list_filter = ("kind", "status", ("session", admin.RelatedOnlyFieldListFilter))
    list_select_related = ("session__classroom", "account")
    search_fields = ("twilio_sid",)
    date_hierarchy = "created_at"
    fields = (
        "kind",
        "masked_phone",
        "body",
        "status",
        "twilio_sid",
        "error_code",
        "error_message",
        "attempts",
        "next_attempt_at",
        "created_at",
        "sent_at",
        "updated_at",
        "session",
        "account",
    )
    readonly_fields = fields


@admin.register(OptOut)
class OptOutAdmin(MaskedPhoneMixin, ReadOnlyAdmin[OptOut]):
    list_display = ("masked_phone", "created_at")
    fields = ("masked_phone", "created_at")
    readonly_fields = fields


@admin.register(UsageStat)
class UsageStatAdmin(ReadOnlyAdmin[UsageStat]):
    list_display = ("day", "metric", "count", "session")
    list_filter = ("metric",)
    date_hierarchy = "day"


@admin.register(Heartbeat)
class HeartbeatAdmin(ReadOnlyAdmin[Heartbeat]):
    list_display = ("name", "beat_at")
