"""The session page and its actions: enrollment now, extend, end now, invite, test message,
roster download, duplicate."""

from __future__ import annotations

import re
from datetime import timedelta
from typing import TYPE_CHECKING, Any

from django import forms
from django.conf import settings
from django.contrib import messages
from django.core.exceptions import PermissionDenied, ValidationError
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect, JsonResponse
from django.template.response import TemplateResponse
from django.urls import URLPattern, path, reverse
from django.utils import timezone
from django.views.decorators.http import require_POST

from registrations import (
    enrollment,
    expiry_notice,
    instructor_limits,
    roster_export,
    session_lifecycle,
    sms,
    texts,
    zones,
)
from registrations.admin import page_state
from registrations.admin.common import integration_notes, integration_warnings, scoped_object
from registrations.admin.dashboard import dashboard_figures
from registrations.admin.joincard import join_card
from registrations.admin.preview import PREVIEW_KINDS, preview_message, typed_moment
from registrations.admin.roster import accounts_to_delete, roster_rows, session_counts
from registrations.models import (
    Account,
    AccountSource,
    InboundOutcome,
    OutboundKind,
    OutboundStatus,
    Session,
    SessionState,
)
from registrations.phones import mask_phone, normalize_phone
from registrations.session_lifecycle import (
    close_enrollment_now,
    open_enrollment_now,
    validation_text,
)

if TYPE_CHECKING:
    from registrations.admin.scoping import ScopedAdmin

    # The mixin is checked as the admin it is mixed into; at run time it is a plain class.
    _SessionAdminBase = ScopedAdmin[Session]
else:
    _SessionAdminBase = object

MAX_INVITES = 500
MAX_EXTEND_MINUTES = 7 * 24 * 60
_SEPARATORS = re.compile(r"[\n,;]+")


def counted(count: int, singular: str, plural: str | None = None) -> str:
    """Return "1 account" / "3 accounts"."""
    return f"{count} {singular if count == 1 else (plural or singular + 's')}"


def session_time(session: Session, moment: Any) -> str:
    """A time as the session's students read it: in its zone, naming the zone."""
    return zones.in_zone(moment, session.time_zone)


def in_session_zone(response: HttpResponse, session: Session) -> HttpResponse:
    """Render a page about one session in the session's zone, so every time on it is the one
    its students read (and names that zone)."""
    if isinstance(response, TemplateResponse) and not response.is_rendered:
        with timezone.override(zones.zone_named(session.time_zone)):
            response.render()
    return response


class ExtendForm(forms.Form):
    minutes = forms.IntegerField(min_value=1, max_value=MAX_EXTEND_MINUTES, initial=30)
    # Unticked checkboxes are not posted: a POST without it texts nobody.
    notify = forms.BooleanField(required=False, initial=True)


class InviteForm(forms.Form):
    phones = forms.CharField(
        widget=forms.Textarea(attrs={"rows": 12, "cols": 40}),
        max_length=MAX_INVITES * 40,
        label="Phone numbers",
        help_text="One per line, or separated by commas. Numbers without a country code are "
        "read as local numbers of the default region.",
    )

    def clean_phones(self) -> list[str]:
        items = [item.strip() for item in _SEPARATORS.split(self.cleaned_data["phones"])]
        items = [item for item in items if item]
        if len(items) > MAX_INVITES:
            raise forms.ValidationError(f"At most {MAX_INVITES} numbers at a time.")
        return items


class TestMessageForm(forms.Form):
    phone = forms.CharField(max_length=32, label="Send to")
    body = forms.CharField(widget=forms.Textarea(attrs={"rows": 3, "cols": 60}), max_length=320)

    def clean_phone(self) -> str:
        phone = normalize_phone(self.cleaned_data["phone"])
        if not phone:
            raise forms.ValidationError("This is not a valid phone number.")
        return phone


class DuplicateForm(forms.Form):
    phrase = forms.CharField(max_length=64, label="New phrase", help_text="What students text.")
    days = forms.IntegerField(
        min_value=0,
        max_value=366,
        initial=7,
        label="Move every time later by (days)",
        help_text="7 repeats the class a week later, same weekday and hour.",
    )


class SessionPageMixin(_SessionAdminBase):
    """Views of the session page; mixed into SessionAdmin (a ScopedAdmin)."""

    def page_url(self, session: Session) -> str:
        return reverse("admin:registrations_session_page", args=[session.pk])

    def page_context(
        self, request: HttpRequest, session: Session, **extra: Any
    ) -> dict[str, Any]:
        return {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "session": session,
            "title": str(session),
            "has_change_permission": self.has_change_permission(request, session),
            **extra,
        }

    def session_page(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = scoped_object(self, request, object_id, "view")
        live = self.roster_context(session)
        joinable = live["page_state"] in page_state.JOINABLE
        context = self.page_context(
            request,
            session,
            card=join_card(session) if joinable else None,
            joinable=joinable,
            running=live["page_state"] in page_state.RUNNING,
            coder_url=settings.CODER_URL,
            warning_at=page_state.warning_at(session),
            warnings=integration_warnings(),
            **live,
        )
        return in_session_zone(
            TemplateResponse(request, "registrations/session_page.html", context), session
        )

    def roster_context(self, session: Session) -> dict[str, Any]:
        """What the live part of the page shows; its state tells the page when to reload."""
        now = timezone.now()
        state = page_state.page_state(session, now)
        return {
            "state": session.state_at(now),
            "page_state": state,
            "counts": session_counts(session),
            "rows": roster_rows(session),
            "progress": page_state.deletion_progress(session, now)
            if state == page_state.ENDING
            else None,
            "summary": page_state.session_summary(session) if state == page_state.DELETED else None,
            "retention_days": settings.RETENTION_DAYS,
            "updated_at": now,
        }

    def roster_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The roster and counts alone, fetched every few seconds by the session page."""
        session = scoped_object(self, request, object_id, "view")
        context = self.page_context(request, session, **self.roster_context(session))
        return in_session_zone(
            TemplateResponse(request, "registrations/_roster.html", context), session
        )

    def enrollment_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = scoped_object(self, request, object_id, "change")
        action = request.POST.get("action")
        try:
            if action == "open":
                open_enrollment_now(session)
                text = (
                    f"Enrollment in “{session}” is open until "
                    f"{session_time(session, session.closes_at)}."
                )
            elif action == "close":
                close_enrollment_now(session)
                text = f"Enrollment in “{session}” is closed."
            else:
                raise ValidationError("Choose to open or close enrollment.")
        except ValidationError as exc:
            messages.error(request, validation_text(exc))
        else:
            self.log_change(request, session, text)
            messages.success(request, text)
        return HttpResponseRedirect(self.page_url(session))

    def extend_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = scoped_object(self, request, object_id, "change")
        form = ExtendForm(request.POST)
        if session.state == SessionState.ENDED:
            messages.error(request, f"“{session}” has ended; it cannot be extended.")
        elif not form.is_valid():
            messages.error(
                request, f"Extend by 1 to {MAX_EXTEND_MINUTES} minutes (a whole number)."
            )
        else:
            self.extend(
                request, session, form.cleaned_data["minutes"], form.cleaned_data["notify"]
            )
        return HttpResponseRedirect(self.page_url(session))

    def extend(self, request: HttpRequest, session: Session, minutes: int, notify: bool) -> None:
        """Extend, then (when asked) text every student the new expiry: the one in their
        credentials SMS is no longer true."""
        try:
            session_lifecycle.extend_session(session, minutes)
        except ValidationError as exc:
            messages.error(request, validation_text(exc))
            return
        session.refresh_from_db()
        text = (
            f"Extended “{session}” by {counted(minutes, 'minute')}: accounts now expire "
            f"at {session_time(session, session.expires_at)}."
        )
        if notify:
            texted = expiry_notice.notify_new_expiry(session)
            text += f" Texting the new expiry to {counted(texted, 'student')}."
        else:
            text += " Students were not texted: their SMS still show the old expiry."
        self.log_change(request, session, text)
        messages.success(request, text)

    def end_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Confirm, then end the session now: every account goes to the deletion pipeline."""
        session = scoped_object(self, request, object_id, "change")
        if request.method == "POST" and request.POST.get("confirm") == "yes":
            count = self.end_session(request, session)
            if count is None:
                messages.warning(request, f"“{session}” had already ended.")
            else:
                messages.success(
                    request,
                    f"Ended “{session}”: {counted(count, 'account')} being deleted from Coder.",
                )
            return HttpResponseRedirect(self.page_url(session))
        context = self.page_context(
            request,
            session,
            title=f"End “{session}” now?",
            sessions=[session],
            to_delete=list(accounts_to_delete(session)),
        )
        return TemplateResponse(request, "registrations/confirm_end.html", context)

    def end_session(self, request: HttpRequest, session: Session) -> int | None:
        """End one session and log it; return how many accounts go, None if it had ended."""
        if session.state == SessionState.ENDED:
            return None
        count = session_lifecycle.end_session(session)
        self.log_change(
            request, session, f"Ended the session now: {counted(count, 'account')} to delete."
        )
        return count

    def invite_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Enroll pasted phone numbers as if each had texted the phrase."""
        session = scoped_object(self, request, object_id, "change")
        form = InviteForm(request.POST or None)
        if session.state == SessionState.ENDED:
            messages.error(request, f"“{session}” has ended; nobody can be invited any more.")
            return HttpResponseRedirect(self.page_url(session))
        if request.method == "POST" and form.is_valid():
            try:
                text = self.invite(request, session, form.cleaned_data["phones"])
            except ValidationError as exc:
                form.add_error(None, exc)
            else:
                self.log_change(request, session, text)
                messages.success(request, text)
                return HttpResponseRedirect(self.page_url(session))
        context = self.page_context(request, session, title=f"Invite to “{session}”", form=form)
        return TemplateResponse(request, "registrations/invite.html", context)

    def invite(self, request: HttpRequest, session: Session, items: list[str]) -> str:
        """Enroll each readable number once; say how many were new, repeats, refused, unreadable.

        Raises ValidationError, inviting nobody, when the new accounts would pass the user's
        daily invite limit.
        """
        phones, unreadable, abroad = [], [], []
        for position, item in enumerate(items, start=1):
            phone = normalize_phone(item)
            if phone is None:
                unreadable.append(str(position))
            elif not instructor_limits.country_allowed(phone):
                abroad.append(str(position))
            elif phone not in phones:
                phones.append(phone)
        self.check_invite_limit(request, session, phones)
        outcomes = [enrollment.enroll(session, p, source=AccountSource.INVITE) for p in phones]
        created = sum(1 for result in outcomes if result.created)
        full = sum(1 for result in outcomes if result.outcome == InboundOutcome.FULL)
        parts = [f"{counted(created, 'new account')} being created"]
        if repeats := len(outcomes) - created - full:
            parts.append(f"{counted(repeats, 'number')} already enrolled")
        if full:
            parts.append(f"{counted(full, 'number')} turned away (the session is full)")
        if unreadable:
            parts.append(
                f"{counted(len(unreadable), 'entry', 'entries')} not a phone number "
                f"(#{', #'.join(unreadable)})"
            )
        if abroad:
            parts.append(
                f"{counted(len(abroad), 'number')} in a country we do not text "
                f"(#{', #'.join(abroad)}; allowed: {instructor_limits.allowed_countries_text()})"
            )
        return f"Invited {counted(len(phones), 'phone number')} to “{session}”: {'; '.join(parts)}."

    def check_invite_limit(self, request: HttpRequest, session: Session, phones: list[str]) -> None:
        """Refuse a batch whose new accounts would pass INSTRUCTOR_DAILY_INVITES."""
        left = instructor_limits.invites_left(request.user)
        if left is None:
            return
        enrolled = set(
            Account.objects.filter(session=session, phone__in=phones).values_list(
                "phone", flat=True
            )
        )
        new = len([phone for phone in phones if phone not in enrolled])
        if new > left:
            raise ValidationError(
                f"Daily invite limit reached: you can invite {counted(left, 'more student')} "
                f"in the next 24 hours (at most {settings.INSTRUCTOR_DAILY_INVITES} a day), "
                f"and this list has {new} new. Nobody was invited; ask an administrator to "
                "invite more."
            )

    def test_message_refusal(self, request: HttpRequest, phone: str) -> str:
        """Say why a test message may not go out ("" when it may)."""
        if not instructor_limits.country_allowed(phone):
            return (
                "Test messages go only to numbers in "
                f"{instructor_limits.allowed_countries_text()} (SMS_ALLOWED_COUNTRIES)."
            )
        if instructor_limits.test_messages_left(request.user) == 0:
            return (
                f"Daily test message limit reached ({settings.INSTRUCTOR_DAILY_TEST_MESSAGES} "
                "in 24 hours). Try again later."
            )
        return ""

    def test_message_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        session = scoped_object(self, request, object_id, "change")
        form = TestMessageForm(request.POST or None, initial={"body": texts.test_text(session)})
        if request.method == "POST" and form.is_valid():
            phone, body = form.cleaned_data["phone"], form.cleaned_data["body"]
            if refusal := self.test_message_refusal(request, phone):
                form.add_error(None, refusal)
            else:
                self.send_test_message(request, session, phone, body)
                return HttpResponseRedirect(self.page_url(session))
        context = self.page_context(
            request, session, title=f"Send a test message for “{session}”", form=form
        )
        return TemplateResponse(request, "registrations/test_message.html", context)

    def send_test_message(
        self, request: HttpRequest, session: Session, phone: str, body: str
    ) -> None:
        message = sms.queue_sms(phone=phone, kind=OutboundKind.TEST, body=body, session=session)
        if message is None or message.status == OutboundStatus.OPTED_OUT:
            messages.warning(request, f"Not sent: {mask_phone(phone)} has opted out (texted STOP).")
            return
        text = (
            f"Test message to {mask_phone(phone)} queued "
            f"({counted(texts.segments(body), 'segment')})."
        )
        self.log_change(request, session, text)
        messages.success(request, text)
        for warning in integration_warnings()[:1]:
            messages.warning(request, warning)

    def roster_csv_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """The roster as a CSV download, scoped like the page (another's session is a 404)."""
        session = scoped_object(self, request, object_id, "view")
        # The byte order mark makes Excel read UTF-8 (the masked phones' dots) instead of ANSI.
        response = HttpResponse(
            "\ufeff" + roster_export.roster_csv(session), content_type="text/csv; charset=utf-8"
        )
        filename = roster_export.csv_filename(session)
        response["Content-Disposition"] = f'attachment; filename="{filename}"'
        return response

    def duplicate_view(self, request: HttpRequest, object_id: str) -> HttpResponse:
        """Ask for a new phrase and a shift, then copy the session and show the copy's page."""
        session = scoped_object(self, request, object_id, "change")
        if not self.has_add_permission(request):
            raise PermissionDenied
        form = DuplicateForm(request.POST or None, initial={"phrase": f"{session.phrase} week 2"})
        if request.method == "POST" and form.is_valid():
            shift = timedelta(days=form.cleaned_data["days"])
            try:
                copy = session_lifecycle.duplicate_session(
                    session, form.cleaned_data["phrase"], shift
                )
            except ValidationError as exc:
                form.add_error(None, validation_text(exc))
            else:
                text = f"Created “{copy}” from “{session}”, {counted(shift.days, 'day')} later."
                self.log_addition(request, copy, text)
                messages.success(request, text)
                return HttpResponseRedirect(self.page_url(copy))
        context = self.page_context(request, session, title=f"Duplicate “{session}”", form=form)
        return in_session_zone(
            TemplateResponse(request, "registrations/duplicate.html", context), session
        )

    def dashboard_view(self, request: HttpRequest) -> HttpResponse:
        if not self.has_view_permission(request):
            raise PermissionDenied
        context = {
            **self.admin_site.each_context(request),
            "opts": self.opts,
            "title": "Dashboard",
            "warnings": integration_warnings(),
            "integration_notes": integration_notes(),
            **dashboard_figures(request.user, timezone.now()),
        }
        return TemplateResponse(request, "registrations/dashboard.html", context)

    def preview_view(self, request: HttpRequest) -> JsonResponse:
        """Render a message override as the SMS a student would get (staff-only JSON)."""
        if not (self.has_add_permission(request) or self.has_change_permission(request)):
            raise PermissionDenied
        kind = request.POST.get("kind", "")
        if kind not in PREVIEW_KINDS:
            return JsonResponse(
                {"error": f"kind must be one of {', '.join(PREVIEW_KINDS)}"}, status=400
            )
        try:
            warn_minutes = int(request.POST.get("warn_minutes") or 10)
        except ValueError:
            warn_minutes = 10
        warn_minutes = min(max(warn_minutes, 1), MAX_EXTEND_MINUTES)
        time_zone = request.POST.get("time_zone", "")[:64]
        # The expiry as typed in the form (date and time boxes), read in the form's zone.
        expires_at = typed_moment(
            request.POST.get("expires_at_0", "")[:32],
            request.POST.get("expires_at_1", "")[:32],
            time_zone,
        )
        preview = preview_message(
            kind,
            request.POST.get("text", "")[:2000],
            time_zone,
            warn_minutes,
            expires_at,
            language=request.POST.get("language", "")[:16],
        )
        return JsonResponse(preview)

    def page_urls(self) -> list[URLPattern]:
        # admin_view adds the staff login check, CSRF protection and never_cache.
        wrap = self.admin_site.admin_view
        return [
            path("dashboard/", wrap(self.dashboard_view), name="registrations_session_dashboard"),
            path(
                "preview-message/",
                wrap(require_POST(self.preview_view)),
                name="registrations_session_preview",
            ),
            path(
                "<path:object_id>/page/", wrap(self.session_page), name="registrations_session_page"
            ),
            path(
                "<path:object_id>/roster/",
                wrap(self.roster_view),
                name="registrations_session_roster",
            ),
            path(
                "<path:object_id>/enrollment/",
                wrap(require_POST(self.enrollment_view)),
                name="registrations_session_enrollment",
            ),
            path(
                "<path:object_id>/extend/",
                wrap(require_POST(self.extend_view)),
                name="registrations_session_extend",
            ),
            path("<path:object_id>/end/", wrap(self.end_view), name="registrations_session_end"),
            path(
                "<path:object_id>/invite/",
                wrap(self.invite_view),
                name="registrations_session_invite",
            ),
            path(
                "<path:object_id>/roster.csv",
                wrap(self.roster_csv_view),
                name="registrations_session_roster_csv",
            ),
            path(
                "<path:object_id>/duplicate/",
                wrap(self.duplicate_view),
                name="registrations_session_duplicate",
            ),
            path(
                "<path:object_id>/test-message/",
                wrap(self.test_message_view),
                name="registrations_session_test_message",
            ),
        ]
