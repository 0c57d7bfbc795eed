"""Account admin: the roster across sessions, and revoke / resend / retry / orphan actions."""

from __future__ import annotations

import logging
from typing import Any

from django.contrib import admin, messages
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import path, reverse
from django.views.decorators.http import require_POST

from registrations import deletion, provisioning
from registrations.admin.common import safe_next, scoped_object
from registrations.admin.roster import still_in_coder
from registrations.admin.scoping import ScopedAdmin
from registrations.admin.session_page import counted
from registrations.models import (
    DELETION_STATUSES,
    Account,
    AccountStatus,
    DeletionReason,
    OutboundMessage,
    OutboundStatus,
)
from registrations.phones import normalize_phone

logger = logging.getLogger(__name__)

GONE_OR_GOING = (*DELETION_STATUSES, AccountStatus.DELETED)

ACCOUNT_FIELDS = (
    (None, {"fields": ("session", "masked_phone", "source", "status", "expires_at")}),
    ("Coder", {"fields": ("coder_username", "coder_user_id", "coder_last_seen_at")}),
    (
        "Progress",
        {
            "fields": (
                "attempts",
                "next_attempt_at",
                "last_error",
                "resend_count",
                "deletion_reason",
                "workspace_delete_failures",
            )
        },
    ),
    (
        "Timeline",
        {
            "fields": (
                "created_at",
                "status_changed_at",
                "provisioned_at",
                "credentials_sent_at",
                "last_resent_at",
                "warned_at",
                "deletion_requested_at",
                "suspended_at",
                "deleted_at",
                "purged_at",
            )
        },
    ),
)


@admin.register(Account)
class AccountAdmin(ScopedAdmin):
    classroom_paths = ("session__classroom",)
    list_display = (
        "__str__",
        "masked_phone",
        "session",
        "status",
        "delivery",
        "coder_last_seen_at",
        "created_at",
        "short_error",
    )
    list_filter = ("status", "source", ("session", admin.RelatedOnlyFieldListFilter))
    search_fields = ("coder_username",)
    search_help_text = "Search by Coder username, or by a full phone number."
    list_select_related = ("session__classroom",)
    fieldsets = ACCOUNT_FIELDS
    readonly_fields = [field for _, opts in ACCOUNT_FIELDS for field in opts["fields"]]
    actions = ["revoke_accounts", "resend_credentials", "retry_provisioning", "orphan_workspaces"]

    def get_queryset(self, request: HttpRequest) -> QuerySet[Account]:
        latest = OutboundMessage.objects.filter(account=OuterRef("pk")).order_by(
            "-created_at", "-pk"
        )
        status = Subquery(latest.values("status")[:1])
        return super().get_queryset(request).annotate(sms_status=status)

    @admin.display(description="phone")
    def masked_phone(self, obj: Account) -> str:
        return obj.masked_phone

    @admin.display(description="last SMS")
    def delivery(self, obj: Account) -> str:
        status = getattr(obj, "sms_status", None)
        return OutboundStatus(status).label if status else "—"

    @admin.display(description="error")
    def short_error(self, obj: Account) -> str:
        return obj.last_error[:80] + ("…" if len(obj.last_error) > 80 else "")

    def get_search_results(
        self, request: HttpRequest, queryset: QuerySet[Account], search_term: str
    ) -> tuple[QuerySet[Account], bool]:
        """Match usernames as usual, and a full phone number exactly (never a fragment)."""
        results, may_have_duplicates = super().get_search_results(request, queryset, search_term)
        phone = normalize_phone(search_term)
        if phone:
            results = results | queryset.filter(phone=phone)
        return results, may_have_duplicates

    def has_add_permission(self, request: HttpRequest) -> bool:
        # Accounts come from texts and invites only (enrollment enforces capacity and uniqueness).
        return False

    def has_delete_permission(self, request: HttpRequest, obj: Account | None = None) -> bool:
        # A row whose user may still exist in Coder must go through the deletion pipeline.
        if obj is not None and still_in_coder(Account.objects.filter(pk=obj.pk)).exists():
            return False
        return super().has_delete_permission(request, obj)

    def has_orphan_permission(self, request: HttpRequest) -> bool:
        # Orphaning leaves the workspace's infrastructure behind: superusers only.
        return request.user.is_superuser

    def get_actions(self, request: HttpRequest) -> dict:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def change_url(self, account: Account) -> str:
        return reverse("admin:registrations_account_change", args=[account.pk])

    def revoke(self, request: HttpRequest, accounts: list[Account]) -> str:
        """Send the accounts to the deletion pipeline; say how many started."""
        started = 0
        for account in accounts:
            if deletion.request_deletion(account, DeletionReason.REVOKED):
                started += 1
                self.log_change(request, account, "Revoked: deletion from Coder started.")
        text = f"Revoked {counted(started, 'account')}: being deleted from Coder now."
        if skipped := len(accounts) - started:
            text += f" {counted(skipped, 'account')} already being deleted or gone."
        return text

    @admin.action(
        description="Revoke selected accounts (delete from Coder now)", permissions=["change"]
    )
    def revoke_accounts(self, request: HttpRequest, queryset: QuerySet[Account]) -> Any:
        accounts = list(queryset.select_related("session"))
        if request.POST.get("confirm") == "yes":
            self.message_user(request, self.revoke(request, accounts), messages.SUCCESS)
            return None
        return self.revoke_confirmation(request, accounts, bulk=True)

    def revoke_confirmation(
        self, request: HttpRequest, accounts: list[Account], *, bulk: bool, next_url: str = ""
    ) -> TemplateResponse:
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Revoke {counted(len(accounts), 'account')}?",
            "accounts": accounts,
            "already": [a for a in accounts if a.status in GONE_OR_GOING],
            "bulk_action": "revoke_accounts" if bulk else "",
            "next": next_url,
        }
        return TemplateResponse(request, "registrations/confirm_revoke.html", context)

    @admin.action(description="Resend credentials (new password) by SMS", permissions=["change"])
    def resend_credentials(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        self.message_user(request, self.resend(request, list(queryset)), messages.SUCCESS)

    def resend(self, request: HttpRequest, accounts: list[Account]) -> str:
        active = [a for a in accounts if a.status == AccountStatus.ACTIVE]
        sent = 0
        for account in active:
            if provisioning.request_resend(account, by_admin=True):
                sent += 1
                self.log_change(request, account, "Resent credentials with a new password.")
        text = f"Resending credentials to {counted(sent, 'account')}."
        if limited := len(active) - sent:
            text += f" {counted(limited, 'account')} rate-limited: try again later."
        if inactive := len(accounts) - len(active):
            text += f" {counted(inactive, 'account')} skipped (not active)."
        return text

    @admin.action(description="Retry failed provisioning", permissions=["change"])
    def retry_provisioning(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        self.message_user(request, self.retry(request, list(queryset)), messages.SUCCESS)

    def retry(self, request: HttpRequest, accounts: list[Account]) -> str:
        retried = 0
        for account in accounts:
            if provisioning.retry_failed(account):
                retried += 1
                self.log_change(request, account, "Retried failed provisioning.")
        text = f"Retrying provisioning of {counted(retried, 'account')}."
        if skipped := len(accounts) - retried:
            text += f" {counted(skipped, 'account')} skipped (not failed)."
        return text

    @admin.action(
        description="Orphan stuck workspaces (leave their infrastructure behind)",
        permissions=["orphan"],
    )
    def orphan_workspaces(self, request: HttpRequest, queryset: QuerySet[Account]) -> None:
        orphaned = 0
        accounts = list(queryset)
        for account in accounts:
            if deletion.orphan_workspaces(account):
                orphaned += 1
                self.log_change(request, account, "Orphaned its stuck workspaces.")
        text = f"Orphaning the workspaces of {counted(orphaned, 'account')}."
        if skipped := len(accounts) - orphaned:
            text += f" {counted(skipped, 'account')} skipped (no stuck workspace deletion)."
        self.message_user(request, text, messages.SUCCESS)

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = scoped_object(self, request, object_id, "change")
        next_url = safe_next(request, self.change_url(account))
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            messages.success(request, self.revoke(request, [account]))
            return HttpResponseRedirect(next_url)
        return self.revoke_confirmation(request, [account], bulk=False, next_url=next_url)

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = scoped_object(self, request, object_id, "change")
        messages.success(request, self.resend(request, [account]))
        return HttpResponseRedirect(safe_next(request, self.change_url(account)))

    def retry_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = scoped_object(self, request, object_id, "change")
        messages.success(request, self.retry(request, [account]))
        return HttpResponseRedirect(safe_next(request, self.change_url(account)))

    def reveal_phone_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Show a superuser the full phone number after a confirmation; the reveal is logged."""
        if not request.user.is_superuser:
            raise PermissionDenied
        account = scoped_object(self, request, object_id, "view")
        revealed = request.method == "POST" and request.POST.get("confirm") == "yes"
        if revealed:
            self.log_change(request, account, "Revealed the phone number.")
            logger.info(
                "user %s revealed the phone number of account %s", request.user.pk, account.pk
            )
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": f"Phone number of {account}",
            "account": account,
            "revealed": revealed,
        }
        return TemplateResponse(request, "registrations/reveal_phone.html", context)

    def get_urls(self) -> list:
        wrap = self.admin_site.admin_view

        def post_only(view: Any) -> Any:
            return wrap(require_POST(view))

        return [
            path(
                "<path:object_id>/revoke/",
                wrap(self.revoke_view),
                name="registrations_account_revoke",
            ),
            path(
                "<path:object_id>/resend/",
                post_only(self.resend_view),
                name="registrations_account_resend",
            ),
            path(
                "<path:object_id>/retry/",
                post_only(self.retry_view),
                name="registrations_account_retry",
            ),
            path(
                "<path:object_id>/reveal-phone/",
                wrap(self.reveal_phone_view),
                name="registrations_account_reveal_phone",
            ),
            *super().get_urls(),
        ]

    def render_change_form(
        self, request: HttpRequest, context: dict, *args: Any, **kwargs: Any
    ) -> HttpResponse:
        obj = context.get("original")
        context["can_act"] = obj is not None and self.has_change_permission(request, obj)
        context["is_superuser"] = request.user.is_superuser
        # Every field is read-only: the page acts through its buttons, not by saving.
        context.update(
            show_save=False, show_save_and_continue=False, show_save_and_add_another=False
        )
        return super().render_change_form(request, context, *args, **kwargs)
