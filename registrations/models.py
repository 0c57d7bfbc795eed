"""Domain model: classrooms, their sessions, student accounts and the SMS log."""

from __future__ import annotations

import re
import uuid
from datetime import datetime
from typing import Any

from django.conf import settings
from django.core.exceptions import ValidationError
from django.db import models
from django.db.models import Q
from django.utils import timezone
from django.utils.crypto import salted_hmac

from registrations import credentials
from registrations.phones import normalize_phone

_E164_SHAPE = re.compile(r"\+[1-9][0-9]{6,14}")


class Classroom(models.Model):
    name = models.CharField(max_length=100)
    owner = models.ForeignKey(
        settings.AUTH_USER_MODEL, on_delete=models.PROTECT, related_name="classrooms"
    )
    co_instructors = models.ManyToManyField(
        settings.AUTH_USER_MODEL, blank=True, related_name="co_taught_classrooms"
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)

    class Meta:
        ordering = ["name"]
        constraints = [
            models.UniqueConstraint(
                fields=["owner", "name"], name="classroom_unique_name_per_owner"
            )
        ]

    def __str__(self) -> str:
        return self.name


class SessionState(models.TextChoices):
    SCHEDULED = "scheduled", "Not open yet"
    OPEN = "open", "Open for enrollment"
    CLOSED = "closed", "Enrollment closed"
    ENDED = "ended", "Ended"


def _e164(raw: str) -> str | None:
    """A phone number in E.164, or None; kept as typed when already E.164-shaped."""
    typed = raw.strip()
    return normalize_phone(typed) or (typed if _E164_SHAPE.fullmatch(typed) else None)


def _string_mapping(value: object) -> bool:
    """Coder takes parameter values as strings: {name: value}, both text."""
    return isinstance(value, dict) and all(
        isinstance(k, str) and isinstance(v, str) for k, v in value.items()
    )


def student_languages() -> list[tuple[str, str]]:
    """The languages a session's SMS can be in (STUDENT_LANGUAGES).

    A callable, so that adding a language to the setting needs no migration.
    """
    return [(str(code), str(name)) for code, name in settings.STUDENT_LANGUAGES]


def default_student_language() -> str:
    """The language of a new session's SMS (DEFAULT_STUDENT_LANGUAGE)."""
    return str(settings.DEFAULT_STUDENT_LANGUAGE)


class Session(models.Model):
    """One sitting of a class: a phrase students text, an enrollment window, an expiry."""

    classroom = models.ForeignKey(Classroom, on_delete=models.CASCADE, related_name="sessions")
    phrase = models.CharField(max_length=64, help_text="What students text, e.g. “python lab 3”.")
    phrase_normalized = models.CharField(max_length=64, editable=False, db_index=True)
    inbound_number = models.CharField(
        # Room to type the number any way: clean() stores it in E.164.
        max_length=32,
        blank=True,
        help_text="The Twilio number students text (E.164). Leave blank to accept any of ours.",
    )
    opens_at = models.DateTimeField("enrollment opens", default=timezone.now)
    closes_at = models.DateTimeField("enrollment closes")
    expires_at = models.DateTimeField("accounts expire")
    ended_at = models.DateTimeField(null=True, blank=True, editable=False)
    capacity = models.PositiveIntegerField(default=100, help_text="Most students who can join.")
    warn_minutes = models.PositiveIntegerField(
        default=10, help_text="Text a warning this many minutes before expiry (0 = no warning)."
    )
    time_zone = models.CharField(
        max_length=64, default=settings.TIME_ZONE, help_text="Times in SMS are shown in this zone."
    )
    language = models.CharField(
        "students' language",
        max_length=16,
        choices=student_languages,
        default=default_student_language,
        help_text="The language of every SMS students get. Your own message texts below are "
        "sent as you type them.",
    )
    coder_template = models.CharField(
        max_length=128,
        blank=True,
        help_text="Coder template to create a workspace from for each student (optional).",
    )
    # {name: value} for the template's rich parameters, passed when each workspace is created.
    # Checked against what Coder reports (registrations/template_parameters.py) when saved.
    template_parameters = models.JSONField(
        default=dict,
        blank=True,
        help_text="Values for the Coder template's parameters, by parameter name.",
    )
    credentials_message = models.TextField(
        blank=True,
        help_text="Override of the credentials SMS. Placeholders: {url} {email} {password} "
        "{expires} {username}; {email} and {password} are required, because Coder's login form "
        "asks for the email address. Leave blank for the default.",
    )
    warning_message = models.TextField(
        blank=True,
        help_text="Override of the expiry warning SMS. Placeholders: {expires} {minutes}.",
    )
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-opens_at"]
        indexes = [models.Index(fields=["phrase_normalized", "expires_at"])]
        constraints = [
            models.CheckConstraint(
                condition=Q(closes_at__gt=models.F("opens_at")), name="session_closes_after_opens"
            ),
            models.CheckConstraint(
                condition=Q(expires_at__gte=models.F("closes_at")),
                name="session_expires_after_closes",
            ),
        ]

    def __str__(self) -> str:
        return f"{self.classroom} · {self.phrase}"

    def save(self, *args: Any, **kwargs: Any) -> None:
        from registrations.phrases import normalize_phrase

        self.phrase_normalized = normalize_phrase(self.phrase)
        super().save(*args, **kwargs)

    def clean(self) -> None:
        from registrations.phrases import normalize_phrase, phrase_problem

        errors: dict[str, str | list[str]] = {}
        problem = phrase_problem(self.phrase or "")
        if problem:
            errors["phrase"] = problem
        if self.capacity and self.capacity > settings.SESSION_MAX_CAPACITY:
            # A cap for everyone: each seat may become a Coder user and workspace.
            errors["capacity"] = (
                f"At most {settings.SESSION_MAX_CAPACITY} students per session "
                "(SESSION_MAX_CAPACITY)."
            )
        if self.opens_at and self.closes_at and self.closes_at <= self.opens_at:
            errors["closes_at"] = "Enrollment must close after it opens."
        if self.closes_at and self.expires_at and self.expires_at < self.closes_at:
            errors["expires_at"] = "Accounts cannot expire before enrollment closes."
        if self.inbound_number:
            # Twilio posts To in E.164: a number typed any other way would never match.
            number = _e164(self.inbound_number)
            if number is None:
                errors["inbound_number"] = (
                    "Enter the Twilio number in international format, e.g. +14155550100."
                )
            else:
                self.inbound_number = number
        if not errors:
            self.phrase_normalized = normalize_phrase(self.phrase)
            clash = self.clashing_session()
            if clash:
                errors["phrase"] = (
                    # Not naming the clash's classroom: it may be another instructor's.
                    f"“{self.phrase}” is already the phrase of another session "
                    f"(session #{clash.pk}), whose enrollment window "
                    f"({clash.opens_at:%Y-%m-%d %H:%M}–{clash.closes_at:%H:%M} UTC) "
                    "overlaps this one. Choose another phrase or other times."
                )
        if not _string_mapping(self.template_parameters):
            errors["template_parameters"] = "Template parameters must map names to text values."
        from registrations.texts import session_override_errors

        errors.update(session_override_errors(self))
        if errors:
            raise ValidationError(errors)

    def clashing_session(self) -> Session | None:
        """Return another live session with this phrase whose enrollment window overlaps."""
        clashes = Session.objects.filter(
            phrase_normalized=self.phrase_normalized,
            opens_at__lt=self.closes_at,
            closes_at__gt=self.opens_at,
            ended_at__isnull=True,
        ).select_related("classroom")
        if self.pk:
            clashes = clashes.exclude(pk=self.pk)
        if self.inbound_number:
            clashes = clashes.filter(Q(inbound_number="") | Q(inbound_number=self.inbound_number))
        return clashes.first()

    def state_at(self, now: datetime) -> SessionState:
        if self.ended_at or self.expires_at <= now:
            return SessionState.ENDED
        if now < self.opens_at:
            return SessionState.SCHEDULED
        if now < self.closes_at:
            return SessionState.OPEN
        return SessionState.CLOSED

    @property
    def state(self) -> SessionState:
        return self.state_at(timezone.now())


class AccountStatus(models.TextChoices):
    REQUESTED = "requested", "Requested"
    PROVISIONING = "provisioning", "Provisioning"
    ACTIVE = "active", "Active"
    FAILED = "failed", "Failed"
    SUSPENDING = "suspending", "Suspending"
    DELETING_WORKSPACES = "deleting_workspaces", "Deleting workspaces"
    DELETING_USER = "deleting_user", "Deleting user"
    DELETED = "deleted", "Deleted"


# Statuses a worker holds only briefly; a row left in one of them is re-driven by the sweep.
IN_FLIGHT_STATUSES = (
    AccountStatus.REQUESTED,
    AccountStatus.PROVISIONING,
    AccountStatus.SUSPENDING,
    AccountStatus.DELETING_WORKSPACES,
    AccountStatus.DELETING_USER,
)
DELETION_STATUSES = (
    AccountStatus.SUSPENDING,
    AccountStatus.DELETING_WORKSPACES,
    AccountStatus.DELETING_USER,
)


class DeletionReason(models.TextChoices):
    EXPIRED = "expired", "Session expired"
    REVOKED = "revoked", "Revoked by an admin"
    DONE = "done", "Student texted DONE"
    ENDED = "ended", "Session ended early"
    GONE = "gone", "Deleted in Coder directly"


class AccountSource(models.TextChoices):
    SMS = "sms", "Texted the phrase"
    INVITE = "invite", "Invited by the instructor"


class Account(models.Model):
    """One student's Coder account in one session. The password is never stored."""

    session = models.ForeignKey(Session, on_delete=models.CASCADE, related_name="accounts")
    # NULL (not '') once purged, so the unique (session, phone) constraint ignores purged rows.
    phone = models.CharField(max_length=16, null=True, blank=True)
    source = models.CharField(max_length=10, choices=AccountSource, default=AccountSource.SMS)
    status = models.CharField(
        max_length=24, choices=AccountStatus, default=AccountStatus.REQUESTED, db_index=True
    )
    coder_username = models.CharField(max_length=32, blank=True)
    coder_user_id = models.CharField(max_length=36, blank=True)
    # What the student types into Coder's login form (Coder logs in by email, never username).
    # Stored as Coder answered at creation: usernames can be renamed and the domain setting
    # can change, but this address stays the user's.
    coder_email = models.EmailField(blank=True)
    expires_at = models.DateTimeField()
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    # The worker process holding this row's current step ("" when none holds it). When that
    # worker stops beating, the step is handed on at once (registrations/liveness.py).
    claimed_by = models.CharField(max_length=64, blank=True, default="")
    # Provisioning attempts cut short by a dying worker (PROVISION_MAX_INTERRUPTIONS).
    interruptions = models.PositiveIntegerField(default=0)
    # When the student was told, once, that Coder trouble delays their account.
    delay_notified_at = models.DateTimeField(null=True, blank=True)
    last_error = models.TextField(blank=True)
    deletion_reason = models.CharField(max_length=10, choices=DeletionReason, blank=True)
    workspace_delete_failures = models.PositiveIntegerField(default=0)
    resend_count = models.PositiveIntegerField(default=0)
    coder_last_seen_at = models.DateTimeField(null=True, blank=True)

    created_at = models.DateTimeField(default=timezone.now, editable=False)
    status_changed_at = models.DateTimeField(default=timezone.now)
    provisioned_at = models.DateTimeField(null=True, blank=True)
    credentials_sent_at = models.DateTimeField(null=True, blank=True)
    last_resent_at = models.DateTimeField(null=True, blank=True)
    warned_at = models.DateTimeField(null=True, blank=True)
    deletion_requested_at = models.DateTimeField(null=True, blank=True)
    suspended_at = models.DateTimeField(null=True, blank=True)
    deleted_at = models.DateTimeField(null=True, blank=True)
    purged_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.UniqueConstraint(fields=["session", "phone"], name="account_one_per_phone"),
            models.UniqueConstraint(
                fields=["coder_username"],
                condition=~Q(coder_username="") & ~Q(status="deleted"),
                name="account_unique_live_username",
            ),
            models.CheckConstraint(
                condition=Q(status__in=AccountStatus.values), name="account_status_valid"
            ),
            models.CheckConstraint(condition=~Q(phone=""), name="account_phone_null_not_empty"),
        ]
        indexes = [
            models.Index(fields=["phone", "status"]),
            models.Index(fields=["status", "status_changed_at"]),
            models.Index(fields=["status", "expires_at"]),
        ]

    def __str__(self) -> str:
        return self.coder_username or f"account #{self.pk}"

    @property
    def masked_phone(self) -> str:
        from registrations.phones import mask_phone

        return mask_phone(self.phone)

    @property
    def is_live(self) -> bool:
        return self.status not in (AccountStatus.DELETED, AccountStatus.FAILED)

    @property
    def login_email(self) -> str:
        """The address the student types into Coder's login form ("" before a user exists)."""
        if self.coder_email:
            return self.coder_email
        return credentials.email_for(self.coder_username) if self.coder_username else ""


class InboundOutcome(models.TextChoices):
    PROVISIONED = "provisioned", "Account requested"
    RESEND = "resend", "Credentials re-sent"
    RESEND_LIMITED = "resend_limited", "Resend rate-limited"
    DUPLICATE = "duplicate", "Duplicate delivery"
    WRONG_PHRASE = "wrong_phrase", "Unrecognised phrase"
    NOT_OPEN = "not_open", "Session not open yet"
    CLOSED = "closed", "Enrollment closed"
    FULL = "full", "Session full"
    THROTTLED = "throttled", "Sender throttled"
    KEYWORD = "keyword", "Keyword"
    OPT_OUT = "opt_out", "Opted out"
    OPT_IN = "opt_in", "Opted back in"
    DONE = "done", "Asked to delete account"
    OWN_NUMBER = "own_number", "From one of our numbers (ignored)"
    OPTED_OUT_PHRASE = "opted_out_phrase", "Phone has opted out (STOP); nothing created or sent"
    INVALID = "invalid", "Invalid message"


class InboundMessage(models.Model):
    message_sid = models.CharField(max_length=64, unique=True)
    phone = models.CharField(max_length=16, null=True, blank=True)
    to_number = models.CharField(max_length=32, blank=True)
    body = models.CharField(max_length=320, blank=True)
    received_at = models.DateTimeField(default=timezone.now, db_index=True)
    outcome = models.CharField(max_length=16, choices=InboundOutcome)
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="inbound_messages"
    )

    class Meta:
        ordering = ["-received_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(outcome__in=InboundOutcome.values), name="inbound_outcome_valid"
            )
        ]
        indexes = [models.Index(fields=["phone", "received_at"])]

    def __str__(self) -> str:
        return f"{self.message_sid} ({self.get_outcome_display()})"


_SEEN_MESSAGE_SALT = "registrations.models.seen_message"


def seen_message_key(message_sid: str) -> str:
    """Return the keyed hash (HMAC with SECRET_KEY) that stands for a MessageSid in SeenMessage."""
    # 128 bits: no two sids ever share a key, and the key reveals nothing about the message.
    return salted_hmac(_SEEN_MESSAGE_SALT, message_sid, algorithm="sha256").hexdigest()[:32]


class SeenMessage(models.Model):
    """A MessageSid we have received, as a keyed hash, kept long after its InboundMessage.

    Retention deletes the message log after RETENTION_DAYS, and writes one of these for each
    message it deletes (until then the log row itself holds the sid): without it a captured,
    validly signed request (a "DONE") replayed later would act again. It identifies nobody: no
    phone, no text, only the day the message was first seen.
    """

    key = models.CharField(max_length=32, primary_key=True)
    first_seen = models.DateField(db_index=True)

    def __str__(self) -> str:
        return f"message seen {self.first_seen:%Y-%m-%d}"


class OutboundKind(models.TextChoices):
    CREDENTIALS = "credentials", "Credentials"
    FAILURE = "failure", "Provisioning failed"
    WARNING = "warning", "Expiry warning"
    DELETED = "deleted", "Account deleted"
    NOTICE = "notice", "Notice"
    TEST = "test", "Test message"


class OutboundStatus(models.TextChoices):
    PENDING = "pending", "Pending"
    SENDING = "sending", "Sending"
    RETRY = "retry", "Waiting to retry"
    ACCEPTED = "accepted", "Accepted"
    QUEUED = "queued", "Queued"
    SCHEDULED = "scheduled", "Scheduled"
    SENT = "sent", "Sent"
    DELIVERED = "delivered", "Delivered"
    READ = "read", "Read"
    UNDELIVERED = "undelivered", "Undelivered"
    FAILED = "failed", "Failed"
    CANCELED = "canceled", "Canceled"
    OPTED_OUT = "opted_out", "Recipient opted out"


class OutboundMessage(models.Model):
    """An SMS we send. The body is stored with any password masked."""

    public_id = models.UUIDField(default=uuid.uuid4, unique=True, editable=False)
    account = models.ForeignKey(
        Account, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_messages"
    )
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="outbound_messages"
    )
    phone = models.CharField(max_length=16, null=True, blank=True)
    kind = models.CharField(max_length=12, choices=OutboundKind)
    body = models.TextField()
    status = models.CharField(max_length=12, choices=OutboundStatus, default=OutboundStatus.PENDING)
    twilio_sid = models.CharField(max_length=64, null=True, blank=True, unique=True)
    error_code = models.IntegerField(null=True, blank=True)
    error_message = models.CharField(max_length=255, blank=True)
    attempts = models.PositiveIntegerField(default=0)
    next_attempt_at = models.DateTimeField(null=True, blank=True)
    created_at = models.DateTimeField(default=timezone.now, editable=False, db_index=True)
    sent_at = models.DateTimeField(null=True, blank=True)
    updated_at = models.DateTimeField(auto_now=True)

    class Meta:
        ordering = ["-created_at"]
        constraints = [
            models.CheckConstraint(
                condition=Q(status__in=OutboundStatus.values), name="outbound_status_valid"
            ),
            models.CheckConstraint(
                condition=Q(kind__in=OutboundKind.values), name="outbound_kind_valid"
            ),
        ]
        indexes = [models.Index(fields=["status", "next_attempt_at"])]

    def __str__(self) -> str:
        return f"{self.get_kind_display()} ({self.get_status_display()})"


class OptOut(models.Model):
    """A phone that texted STOP: nothing is sent to it until it texts START."""

    phone = models.CharField(max_length=16, unique=True)
    created_at = models.DateTimeField(default=timezone.now)

    def __str__(self) -> str:
        from registrations.phones import mask_phone

        return mask_phone(self.phone)


class Heartbeat(models.Model):
    """Stamped by the worker so /healthz can tell whether background jobs run."""

    name = models.CharField(max_length=64, primary_key=True)
    beat_at = models.DateTimeField()

    def __str__(self) -> str:
        return f"{self.name} @ {self.beat_at:%Y-%m-%d %H:%M:%S}"


class UsageStat(models.Model):
    """Anonymous daily counts that outlive the retention of messages and accounts."""

    day = models.DateField()
    session = models.ForeignKey(
        Session, null=True, blank=True, on_delete=models.SET_NULL, related_name="usage_stats"
    )
    metric = models.CharField(max_length=32)
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["day", "session", "metric"], name="usagestat_unique")
        ]

    def __str__(self) -> str:
        return f"{self.day} {self.metric}={self.count}"


class LoginFailure(models.Model):
    """A failed admin login, kept for the login rate-limit window (registrations.security).

    The key is an HMAC of the username and client address: neither is stored, nor a password
    typed into the username box by mistake.
    """

    key = models.CharField(max_length=64)
    failed_at = models.DateTimeField(default=timezone.now)

    class Meta:
        indexes = [models.Index(fields=["key", "failed_at"])]

    def __str__(self) -> str:
        return f"failed login at {self.failed_at:%Y-%m-%d %H:%M:%S}"


class LoginThrottle(models.Model):
    """One username's recent failed logins from any address (registrations.security).

    Its row is also the lock that makes checking and counting one step: every login for the
    username takes it (select_for_update), so parallel guesses are judged one after another.
    The key is an HMAC of the username, as in LoginFailure.
    """

    key = models.CharField(max_length=64, unique=True)
    failures = models.PositiveIntegerField(default=0)
    last_failure_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        return f"{self.failures} failed logins"


class IntegrationStatus(models.Model):
    """What the worker's last probe of Coder or Twilio found (registrations.probes).

    Web processes read it for /healthz and the admin banner: they never call Coder or Twilio
    themselves. No token is ever stored here.
    """

    name = models.CharField(max_length=16, primary_key=True)
    # None until the first probe has answered.
    ok = models.BooleanField(null=True)
    # A short machine-readable reason ("rejected", "unreachable", ...) the banner turns into advice.
    problem = models.CharField(max_length=16, blank=True)
    detail = models.CharField(max_length=255, blank=True)
    version = models.CharField(max_length=64, blank=True)
    checked_at = models.DateTimeField(null=True, blank=True)
    # The once-a-minute lease: several workers run the heartbeat, only one probes per minute.
    claimed_at = models.DateTimeField(null=True, blank=True)

    def __str__(self) -> str:
        state = {True: "ok", False: "failing", None: "not checked"}[self.ok]
        return f"{self.name}: {state}"


class CoderRouteWindow(models.Model):
    """Requests we sent on one shared Coder route in one minute (registrations.rate_budget).

    Coder limits each API client per URL path with httprate's sliding window; routes that
    carry no user or workspace id (creating users, listing workspaces) are one budget for every
    worker of this deployment, so the count lives here, where all of them see it.
    """

    route = models.CharField(max_length=100)
    # Unix time // 60: httprate's windows are aligned to the minute.
    window = models.BigIntegerField()
    count = models.PositiveIntegerField(default=0)

    class Meta:
        constraints = [
            models.UniqueConstraint(fields=["route", "window"], name="coderroutewindow_unique")
        ]

    def __str__(self) -> str:
        return f"{self.route} @ {self.window}: {self.count}"


class SsoIdentity(models.Model):
    """The single sign-on identity an admin user logs in as (registrations/sso.py).

    A provider names a person by its issuer and their `sub`, which never changes, unlike an
    email address; a login is matched on that pair, so renaming someone's email at the provider
    (or giving a departed person's address to someone new) never hands over an account.
    """

    user = models.OneToOneField(
        settings.AUTH_USER_MODEL, on_delete=models.CASCADE, related_name="sso_identity"
    )
    issuer = models.CharField(max_length=255)
    subject = models.CharField(max_length=255)
    created_at = models.DateTimeField(default=timezone.now, editable=False)
    last_login_at = models.DateTimeField(null=True, blank=True)

    class Meta:
        verbose_name = "single sign-on identity"
        verbose_name_plural = "single sign-on identities"
        constraints = [
            models.UniqueConstraint(fields=["issuer", "subject"], name="sso_identity_unique_sub")
        ]

    def __str__(self) -> str:
        return f"{self.subject} at {self.issuer}"
