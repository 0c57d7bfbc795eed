"""Account admin: the roster across sessions, and revoke / resend / retry / orphan actions."""

from __future__ import annotations

import logging
from collections.abc import Callable
from typing import Any

from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import OuterRef, QuerySet, Subquery
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from registrations import deletion, provisioning, zones
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
# Flash messages name at most this many students, then say how many more.
NAMED_AT_MOST = 5


def named(account: Account) -> str:
    """"cs-k7pw3m (+•••••••••23)": who an action is about, as the roster shows them."""
    return f"{account} ({account.masked_phone})"


def names(accounts: list[Account]) -> str:
    shown = ", ".join(named(a) for a in accounts[:NAMED_AT_MOST])
    if len(accounts) > NAMED_AT_MOST:
        shown += f" and {len(accounts) - NAMED_AT_MOST} more"
    return shown


# The account page's sections: (title, fields). Every field is read-only.
ACCOUNT_SECTIONS: tuple[tuple[str | None, tuple[str, ...]], ...] = (
    (None, ("session", "masked_phone", "source", "status", "expires_at")),
    ("Coder", ("coder_username", "coder_user_id", "coder_last_seen_at")),
    (
        "Progress",
        (
            "attempts",
            "next_attempt_at",
            "last_error",
            "resend_count",
            "deletion_reason",
            "workspace_delete_failures",
        ),
    ),
    (
        "Timeline",
        (
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
        ),
    ),
)


@admin.register(Account)
class AccountAdmin(ScopedAdmin[Account]):
    classroom_paths = ("session__classroom",)
    list_display = (
        "__str__",
        "masked_phone",
        "session",
        "status",
        "delivery",
        "last_seen",
        "joined",
        "short_error",
    )
    list_filter = ("status", "source", ("session", admin.RelatedOnlyFieldListFilter))
    search_fields = ("coder_username",)
    search_help_text = "Search by Coder username, or by a full phone number."
    list_select_related = ("session__classroom",)
    fieldsets = [(title, {"fields": fields}) for title, fields in ACCOUNT_SECTIONS]
    readonly_fields = [field for _, fields in ACCOUNT_SECTIONS for field in fields]
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

    # Times in the account's session zone, naming it: the list may mix sessions and zones.
    @admin.display(description="last seen in Coder", ordering="coder_last_seen_at")
    def last_seen(self, obj: Account) -> str:
        return zones.in_zone(obj.coder_last_seen_at, obj.session.time_zone)

    @admin.display(description="joined", ordering="created_at")
    def joined(self, obj: Account) -> str:
        return zones.in_zone(obj.created_at, obj.session.time_zone)

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

    def get_actions(
        self, request: HttpRequest
    ) -> dict[str, tuple[Callable[..., str], str, str] | None]:
        actions = super().get_actions(request)
        actions.pop("delete_selected", None)
        return actions

    def change_url(self, account: Account) -> str:
        return reverse("admin:registrations_account_change", args=[account.pk])

    def revoke(self, request: HttpRequest, accounts: list[Account]) -> str:
        """Send the accounts to the deletion pipeline; say how many started (and whom)."""
        # Named before: a deletion that completes at once purges the phone number.
        who = named(accounts[0]) if accounts else ""
        started = 0
        for account in accounts:
            if deletion.request_deletion(account, DeletionReason.REVOKED):
                started += 1
                self.log_change(request, account, "Revoked: deletion from Coder started.")
        if len(accounts) == 1 and started:
            text = (
                f"Revoked {who}: being deleted from Coder now; they get an SMS "
                "saying so."
            )
        else:
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
    def resend_credentials(self, request: HttpRequest, queryset: QuerySet[Account]) -> Any:
        accounts = list(queryset.select_related("session"))
        if request.POST.get("confirm") == "yes":
            self.message_user(request, self.resend(request, accounts), messages.SUCCESS)
            return None
        return self.resend_confirmation(request, accounts, bulk=True)

    def resend_confirmation(
        self, request: HttpRequest, accounts: list[Account], *, bulk: bool, next_url: str = ""
    ) -> TemplateResponse:
        """Say whose password changes and that the old one stops working, before it does."""
        active = [a for a in accounts if a.status == AccountStatus.ACTIVE]
        if len(accounts) == 1:
            title = f"Send {accounts[0]} a new password?"
        else:
            title = f"Send {counted(len(active), 'student')} a new password?"
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": title,
            "accounts": accounts,
            "active": active,
            "skipped": [a for a in accounts if a.status != AccountStatus.ACTIVE],
            "bulk_action": "resend_credentials" if bulk else "",
            "next": next_url,
        }
        return TemplateResponse(request, "registrations/confirm_resend.html", context)

    def resend(self, request: HttpRequest, accounts: list[Account]) -> str:
        """Set and text a new password for each active account; say whose, by name."""
        active = [a for a in accounts if a.status == AccountStatus.ACTIVE]
        sent, refused = [], []
        for account in active:
            if provisioning.request_resend(account, by_admin=True):
                sent.append(account)
                self.log_change(request, account, "Resent credentials with a new password.")
            else:
                refused.append(account)
        if len(accounts) == 1 and sent:
            text = (
                f"Sending {named(sent[0])} a new password by SMS: their old password stops "
                "working as soon as Coder has the new one."
            )
        elif sent:
            text = (
                f"Sending {counted(len(sent), 'student')} a new password by SMS "
                f"({names(sent)}): their old passwords stop working."
            )
        else:
            text = "No new password was sent."
        if refused:
            text += (
                f" Not sent to {names(refused)}: the phone opted out (texted STOP) or the "
                "account is being deleted."
            )
        if inactive := [a for a in accounts if a.status != AccountStatus.ACTIVE]:
            text += f" {counted(len(inactive), 'account')} skipped (not active): {names(inactive)}."
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

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        """Show the account's times in its session's zone (each names that zone)."""
        account = self.get_object(request, unquote(object_id)) if object_id else None
        zone = zones.zone_named(account.session.time_zone if account else None)
        with timezone.override(zone):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def revoke_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        account = scoped_object(self, request, object_id, "change")
        next_url = safe_next(request, self.change_url(account))
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            messages.success(request, self.revoke(request, [account]))
            return HttpResponseRedirect(next_url)
        return self.revoke_confirmation(request, [account], bulk=False, next_url=next_url)

    def resend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm (naming the student), then set and text a new password."""
        account = scoped_object(self, request, object_id, "change")
        next_url = safe_next(request, self.change_url(account))
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            messages.success(request, self.resend(request, [account]))
            return HttpResponseRedirect(next_url)
        return self.resend_confirmation(request, [account], bulk=False, next_url=next_url)

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

    def get_urls(self) -> list[URLPattern]:
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
                wrap(self.resend_view),
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
        self, request: HttpRequest, context: dict[str, Any], *args: Any, **kwargs: Any
    ) -> HttpResponse:
        obj = context.get("original")
        context["can_act"] = obj is not None and self.has_change_permission(request, obj)
        context["is_superuser"] = request.user.is_superuser
        # Every field is read-only: the page acts through its buttons, not by saving.
        context.update(
            show_save=False, show_save_and_continue=False, show_save_and_add_another=False
        )
        return super().render_change_form(request, context, *args, **kwargs)
