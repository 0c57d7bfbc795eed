"""Session admin: list, create/change form with defaults and previews, bulk end."""

from __future__ import annotations

from collections.abc import Iterable, Sequence
from typing import Any, TypedDict

from django import forms
from django.conf import settings
from django.contrib import admin, messages
from django.contrib.admin.utils import unquote
from django.core.exceptions import PermissionDenied
from django.db.models import Count, Q, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.utils.html import format_html
from django_stubs_ext import StrOrPromise, WithAnnotations

from registrations import session_lifecycle, zones
from registrations.admin.classrooms import THEN_SESSION
from registrations.admin.common import integration_warnings
from registrations.admin.parameter_fields import fragment, parameters_field
from registrations.admin.roster import accounts_to_delete, still_in_coder
from registrations.admin.scoping import ScopedAdmin, classrooms_for
from registrations.admin.session_form import SessionForm, template_field, time_zone_field
from registrations.admin.session_page import SessionPageMixin, counted
from registrations.models import Account, Session, SessionState
from registrations.session_lifecycle import default_times


class StateFilter(admin.SimpleListFilter):
    title = "state"
    parameter_name = "state"

    def lookups(
        self, request: HttpRequest, model_admin: admin.ModelAdmin[Any]
    ) -> Iterable[tuple[str, StrOrPromise]]:
        return SessionState.choices

    def queryset(self, request: HttpRequest, queryset: QuerySet[Session]) -> QuerySet[Session]:
        now = timezone.now()
        live = Q(ended_at__isnull=True, expires_at__gt=now)
        conditions: dict[str, Q] = {
            SessionState.SCHEDULED: live & Q(opens_at__gt=now),
            SessionState.OPEN: live & Q(opens_at__lte=now, closes_at__gt=now),
            SessionState.CLOSED: live & Q(closes_at__lte=now),
            SessionState.ENDED: ~live,
        }
        value = self.value()
        condition = None if value is None else conditions.get(value)
        return queryset if condition is None else queryset.filter(condition)


def live_account_blockers(accounts: QuerySet[Account]) -> list[str]:
    """Explain which sessions cannot be deleted because Coder may still hold their accounts."""
    blocked = (
        still_in_coder(accounts)
        .values("session__pk", "session__phrase")
        .annotate(n=Count("pk"))
        .order_by("session__pk")
    )
    return [
        f"Session “{row['session__phrase']}” (#{row['session__pk']}) still has "
        f"{counted(row['n'], 'account')} in Coder: end it and wait for the deletions first."
        for row in blocked
    ]


class AccountTotal(TypedDict):
    """What SessionAdmin.get_queryset annotates each session with."""

    account_total: int


@admin.register(Session)
class SessionAdmin(SessionPageMixin, ScopedAdmin[Session]):
    classroom_paths = ("classroom",)
    form = SessionForm
    list_display = (
        "phrase",
        "classroom",
        "state_label",
        "opens",
        "closes",
        "expires",
        "joined",
        "language",
        "page_link",
    )
    list_filter = (StateFilter, ("classroom", admin.RelatedOnlyFieldListFilter))
    search_fields = ("phrase", "classroom__name")
    date_hierarchy = "opens_at"
    actions = ["end_sessions"]
    fieldsets = (
        (None, {"fields": ("classroom", "phrase", "inbound_number")}),
        (
            "When",
            {
                # The zone first: the times below it are typed on that zone's clock.
                "fields": ("time_zone", "opens_at", "closes_at", "expires_at", "warn_minutes"),
                "description": "Students can text the phrase between the opening and the close "
                "of enrollment. Their accounts and workspaces are deleted at expiry; changing "
                "it here moves every student's, and a time already past ends the session now.",
            },
        ),
        ("Accounts", {"fields": ("capacity", "coder_template", "template_parameters")}),
        (
            "Messages",
            {
                "fields": ("language", "credentials_message", "warning_message"),
                "description": "Every SMS students get is in the language chosen here. The "
                "two texts are optional: leave them blank to send the default texts in that "
                "language. A preview shows the SMS as a student would get it, how many "
                "segments it takes, and its encoding: an accented letter outside GSM-7 (á, í, "
                "ó, ú) makes the whole SMS UCS-2, 70 characters a segment instead of 160.",
            },
        ),
    )

    def get_queryset(self, request: HttpRequest) -> QuerySet[Session]:
        return (
            super()
            .get_queryset(request)
            .select_related("classroom")
            .annotate(account_total=Count("accounts"))
        )

    @admin.display(description="state")
    def state_label(self, obj: Session) -> str:
        return obj.state.label

    # Each row's times in its own session's zone, naming it: a list may mix zones.
    @admin.display(description="enrollment opens", ordering="opens_at")
    def opens(self, obj: Session) -> str:
        return zones.in_zone(obj.opens_at, obj.time_zone)

    @admin.display(description="enrollment closes", ordering="closes_at")
    def closes(self, obj: Session) -> str:
        return zones.in_zone(obj.closes_at, obj.time_zone)

    @admin.display(description="accounts expire", ordering="expires_at")
    def expires(self, obj: Session) -> str:
        return zones.in_zone(obj.expires_at, obj.time_zone)

    @admin.display(description="joined", ordering="account_total")
    def joined(self, obj: WithAnnotations[Session, AccountTotal]) -> str:
        return f"{obj.account_total} / {obj.capacity}"

    @admin.display(description="")
    def page_link(self, obj: Session) -> str:
        return format_html('<a href="{}">Session page</a>', self.page_url(obj))

    def get_urls(self) -> list[URLPattern]:
        parameters = path(
            "template-parameters/",
            self.admin_site.admin_view(self.template_parameters_view),
            name="registrations_session_template_parameters",
        )
        return [parameters, *self.page_urls(), *super().get_urls()]

    def template_parameters_view(self, request: HttpRequest) -> HttpResponse:
        """The inputs for a template's parameters (staff-only HTML the change form swaps in)."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        template = request.GET.get("template", "")[:128]
        session = None
        if request.GET.get("session", "").isdigit():
            session = self.get_object(request, request.GET["session"])
        stored_template = session.coder_template if session else ""
        stored = session.template_parameters if session else {}
        return HttpResponse(fragment(template, stored_template, stored))

    def save_model(self, request: HttpRequest, obj: Session, form: Any, change: bool) -> None:
        super().save_model(request, obj, form, change)
        if not change or "expires_at" not in form.changed_data:
            return
        count = session_lifecycle.move_expiry(obj)
        if obj.ended_at:
            text = f"The new expiry has passed: {counted(count, 'account')} being deleted."
        else:
            text = f"The new expiry applies to {counted(count, 'account')}."
        messages.info(request, text)

    def get_readonly_fields(
        self, request: HttpRequest, obj: Session | None = None
    ) -> list[str] | tuple[Any, ...]:
        """A session stays in the classroom it was created in: otherwise a co-instructor could
        move the owner's session into a classroom of their own, away from the owner."""
        fields = tuple(super().get_readonly_fields(request, obj))
        return (*fields, "classroom") if obj is not None else fields

    def get_form(
        self,
        request: HttpRequest,
        obj: Session | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm[Session]]:
        form = super().get_form(request, obj, change, **kwargs)
        if "coder_template" in form.base_fields:
            form.base_fields["coder_template"] = template_field(obj.coder_template if obj else "")
        if "time_zone" in form.base_fields:
            form.base_fields["time_zone"] = time_zone_field(obj.time_zone if obj else "")
        if "template_parameters" in form.base_fields:
            form.base_fields["template_parameters"] = self.template_parameters_field(request, obj)
        return form

    @staticmethod
    def template_parameters_field(request: HttpRequest, obj: Session | None) -> forms.Field:
        """The parameters of the template being saved (the posted one), else the session's."""
        stored_template = obj.coder_template if obj else ""
        template = stored_template
        if request.method == "POST" and "coder_template" in request.POST:
            template = request.POST["coder_template"].strip()
        stored = obj.template_parameters if obj and template == stored_template else {}
        must_check = obj is None or template != stored_template
        return parameters_field(template, stored, must_check=must_check)

    def get_changeform_initial_data(self, request: HttpRequest) -> dict[str, Any]:
        """Opens now, closes after the default window, expires after the default lifetime."""
        times = default_times(opens_at=timezone.now().replace(second=0, microsecond=0))
        initial = {
            "opens_at": times.opens_at,
            "closes_at": times.closes_at,
            "expires_at": times.expires_at,
            **super().get_changeform_initial_data(request),
        }
        classrooms = self.formfield_for_foreignkey(
            Session._meta.get_field("classroom"), request
        ).queryset
        if "classroom" not in initial and classrooms.count() == 1:
            initial["classroom"] = classrooms.get().pk
        return initial

    def get_fieldsets(self, request: HttpRequest, obj: Session | None = None) -> Any:
        """Say above the times which zone they are in (the one the form is shown in)."""
        note = format_html(
            '<p class="cs-zone-note">Times are in <strong id="zone-note">{}</strong>, '
            "the session's time zone, as students' SMS show them.</p>",
            timezone.get_current_timezone_name(),
        )
        fieldsets = []
        for name, options in super().get_fieldsets(request, obj):
            if name == "When":
                description = format_html("{}{}", note, options.get("description", ""))
                options = {**options, "description": description}
            fieldsets.append((name, options))
        return fieldsets

    def form_zone(self, request: HttpRequest, object_id: str | None) -> str:
        """The zone the form's times are read and shown in: the one chosen in the form, else
        the session's, else (a new session) TIME_ZONE."""
        posted = request.POST.get("time_zone", "") if request.method == "POST" else ""
        if zones.is_zone(posted):
            return posted
        if object_id:
            obj = self.get_object(request, unquote(object_id))
            if obj is not None and zones.is_zone(obj.time_zone):
                return str(obj.time_zone)
        return str(settings.TIME_ZONE)

    def changeform_view(
        self,
        request: HttpRequest,
        object_id: str | None = None,
        form_url: str = "",
        extra_context: dict[str, Any] | None = None,
    ) -> HttpResponse:
        extra_context = {**(extra_context or {}), "integration_warnings": integration_warnings()}
        # Django reads and shows form times in the current zone: make it the session's, for
        # reading the posted times as much as for rendering (the "Now" shortcut included).
        with timezone.override(zones.zone_named(self.form_zone(request, object_id))):
            response = super().changeform_view(request, object_id, form_url, extra_context)
            if isinstance(response, TemplateResponse):
                response.render()
        return response

    def add_view(
        self, request: HttpRequest, form_url: str = "", extra_context: dict[str, Any] | None = None
    ) -> HttpResponse:
        """A first-time instructor has no classroom yet: create it first, then come back."""
        if (
            request.method == "GET"
            and "_popup" not in request.GET
            and not classrooms_for(request.user).exists()
            and request.user.has_perm("registrations.add_classroom")
        ):
            messages.info(
                request,
                "First create your classroom: give it a name (e.g. “CS 101”) and save. "
                "Its first session comes next.",
            )
            url = reverse("admin:registrations_classroom_add")
            return HttpResponseRedirect(f"{url}?{THEN_SESSION}=session")
        return super().add_view(request, form_url, extra_context)

    def response_add(
        self, request: HttpRequest, obj: Session, post_url_continue: str | None = None
    ) -> HttpResponse:
        """After creating a session, show its page (the join card) unless asked otherwise."""
        if any(key in request.POST for key in ("_continue", "_addanother", "_popup")):
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"Created “{obj}”. Project this page so students can join.")
        return HttpResponseRedirect(self.page_url(obj))

    def get_deleted_objects(
        self, objs: Sequence[Session] | QuerySet[Session], request: HttpRequest
    ) -> tuple[list[str], dict[str, int], set[str], list[str]]:
        deleted, counts, perms_needed, protected = super().get_deleted_objects(objs, request)
        pks = [obj.pk for obj in objs]
        blockers = live_account_blockers(Account.objects.filter(session__in=pks))
        return deleted, counts, perms_needed, [*protected, *blockers]

    @admin.action(
        description="End selected sessions now (delete their accounts)", permissions=["change"]
    )
    def end_sessions(self, request: HttpRequest, queryset: QuerySet[Session]) -> Any:
        sessions = list(queryset)
        if not sessions:
            # "Select all" on a filtered list that matches nothing hands us an empty queryset.
            self.message_user(request, "No sessions match: none were ended.", messages.WARNING)
            return None
        if request.POST.get("confirm") != "yes":
            context = self.page_context(
                request,
                sessions[0],
                title=f"End {counted(len(sessions), 'session')} now?",
                sessions=sessions,
                to_delete=[a for s in sessions for a in accounts_to_delete(s)],
                bulk_action="end_sessions",
            )
            return TemplateResponse(request, "registrations/confirm_end.html", context)
        results = [self.end_session(request, session) for session in sessions]
        ended = [count for count in results if count is not None]
        text = (
            f"Ended {counted(len(ended), 'session')}: "
            f"{counted(sum(ended), 'account')} being deleted from Coder."
        )
        if already := len(results) - len(ended):
            text += f" {counted(already, 'session')} had already ended."
        self.message_user(request, text, messages.SUCCESS)
        return None
