"""Classroom admin: instructors create their own classrooms and name co-instructors."""

from __future__ import annotations

from typing import Any, TypedDict

from django import forms
from django.contrib import admin, messages
from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet
from django.http import HttpRequest, HttpResponse, HttpResponseRedirect
from django.urls import reverse
from django_stubs_ext import WithAnnotations

from registrations.admin.scoping import ScopedAdmin
from registrations.instructors import INSTRUCTORS_GROUP
from registrations.models import Classroom

# Query parameter of the classroom add page when it is the first step of creating a session.
THEN_SESSION = "then"


class SessionTotal(TypedDict):
    """What ClassroomAdmin.get_queryset annotates each classroom with."""

    session_total: int


def co_instructor_choices(owner_id: int | None) -> QuerySet[Any]:
    """Who can co-teach a classroom: active instructors other than its owner.

    Superusers see every classroom anyway, and the owner teaches it already: listing either
    would only make the picker longer.
    """
    users = get_user_model().objects.filter(
        is_staff=True, is_active=True, is_superuser=False, groups__name=INSTRUCTORS_GROUP
    )
    if owner_id is not None:
        users = users.exclude(pk=owner_id)
    return users.distinct().order_by("username")


class OwnedClassroomForm(forms.ModelForm[Classroom]):
    """A classroom form whose owner is fixed (not a field), checking that names stay unique."""

    # Who a new classroom will belong to: ClassroomAdmin.get_form sets it on the class it builds
    # for the request (a class of its own each time, so requests never share it).
    new_owner_id: int | None = None

    def clean_name(self) -> str:
        name: str = self.cleaned_data["name"]
        owner_id = self.instance.owner_id if self.instance.pk else self.new_owner_id
        clash = Classroom.objects.filter(owner_id=owner_id, name=name)
        if clash.exclude(pk=self.instance.pk).exists():
            raise forms.ValidationError(f"You already have a classroom named “{name}”.")
        return name


@admin.register(Classroom)
class ClassroomAdmin(ScopedAdmin[Classroom]):
    classroom_paths = ("pk",)
    list_display = ("name", "owner", "session_count", "created_at")
    list_filter = (("owner", admin.RelatedOnlyFieldListFilter),)
    search_fields = ("name",)
    filter_horizontal = ("co_instructors",)

    def get_queryset(self, request: HttpRequest) -> QuerySet[Classroom]:
        return (
            super()
            .get_queryset(request)
            .select_related("owner")
            .annotate(session_total=Count("sessions", distinct=True))
        )

    @admin.display(description="sessions", ordering="session_total")
    def session_count(self, obj: WithAnnotations[Classroom, SessionTotal]) -> int:
        return obj.session_total

    def get_fields(self, request: HttpRequest, obj: Classroom | None = None) -> tuple[str, ...]:
        if request.user.is_superuser:
            return ("name", "owner", "co_instructors")
        return ("name", "co_instructors")

    def get_form(
        self,
        request: HttpRequest,
        obj: Classroom | None = None,
        change: bool = False,
        **kwargs: Any,
    ) -> type[forms.ModelForm[Classroom]]:
        if not request.user.is_superuser:
            kwargs["form"] = OwnedClassroomForm
        form = super().get_form(request, obj, change, **kwargs)
        if issubclass(form, OwnedClassroomForm):
            form.new_owner_id = request.user.pk
        # Set on this request's form class (get_form builds a new one each call).
        owner_id = obj.owner_id if obj else (None if request.user.is_superuser else request.user.pk)
        picker = form.base_fields.get("co_instructors")
        if isinstance(picker, forms.ModelMultipleChoiceField):
            picker.queryset = co_instructor_choices(owner_id)
        return form

    def response_add(
        self, request: HttpRequest, obj: Classroom, post_url_continue: str | None = None
    ) -> HttpResponse:
        """A classroom made on the way to a first session leads straight to that session."""
        others = ("_continue", "_addanother", "_popup")
        if request.GET.get(THEN_SESSION) != "session" or any(k in request.POST for k in others):
            return super().response_add(request, obj, post_url_continue)
        messages.success(request, f"Created the classroom “{obj}”. Now create its first session.")
        url = reverse("admin:registrations_session_add")
        return HttpResponseRedirect(f"{url}?classroom={obj.pk}")

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "owner":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "co_instructors":
            # Narrowed to the classroom's owner in get_form, where the object is known.
            kwargs["queryset"] = co_instructor_choices(None)
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Classroom, form: Any, change: bool) -> None:
        user = request.user
        # Authenticated always: admin views require a staff login.
        if not change and user.is_authenticated and not user.is_superuser:
            obj.owner = user
        super().save_model(request, obj, form, change)

    def is_owner(self, request: HttpRequest, obj: Classroom | None) -> bool:
        """Co-instructors run the classroom's sessions, but only its owner edits or deletes it."""
        return obj is None or request.user.is_superuser or obj.owner_id == request.user.pk

    def has_change_permission(self, request: HttpRequest, obj: Classroom | None = None) -> bool:
        return super().has_change_permission(request, obj) and self.is_owner(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Classroom | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self.is_owner(request, obj)
