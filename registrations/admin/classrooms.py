"""Classroom admin: instructors create their own classrooms and name co-instructors."""

from __future__ import annotations

from typing import Any

from django import forms
from django.contrib import admin
from django.contrib.auth import get_user_model
from django.db.models import Count, QuerySet
from django.http import HttpRequest

from registrations.admin.scoping import ScopedAdmin
from registrations.models import Classroom


def owned_classroom_form(form: type[forms.ModelForm], owner: Any) -> type[forms.ModelForm]:
    """Wrap a classroom form whose owner is fixed (not a field) so that names stay unique."""

    class OwnedClassroomForm(form):
        def clean_name(self) -> str:
            name = self.cleaned_data["name"]
            owner_id = self.instance.owner_id if self.instance.pk else owner.pk
            clash = Classroom.objects.filter(owner_id=owner_id, name=name)
            if clash.exclude(pk=self.instance.pk).exists():
                raise forms.ValidationError(f"You already have a classroom named “{name}”.")
            return name

    return OwnedClassroomForm


@admin.register(Classroom)
class ClassroomAdmin(ScopedAdmin):
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
    def session_count(self, obj: Classroom) -> int:
        return obj.session_total

    def get_fields(self, request: HttpRequest, obj: Classroom | None = None) -> list[str]:
        if request.user.is_superuser:
            return ["name", "owner", "co_instructors"]
        return ["name", "co_instructors"]

    def get_form(self, request: HttpRequest, obj: Classroom | None = None, **kwargs: Any) -> Any:
        form = super().get_form(request, obj, **kwargs)
        if request.user.is_superuser:
            return form
        return owned_classroom_form(form, request.user)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "owner":
            kwargs["queryset"] = get_user_model().objects.filter(is_staff=True, is_active=True)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)

    def formfield_for_manytomany(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        if db_field.name == "co_instructors":
            kwargs["queryset"] = (
                get_user_model().objects.filter(is_staff=True, is_active=True).order_by("username")
            )
        return super().formfield_for_manytomany(db_field, request, **kwargs)

    def save_model(self, request: HttpRequest, obj: Classroom, form: Any, change: bool) -> None:
        if not change and not request.user.is_superuser:
            obj.owner = request.user
        super().save_model(request, obj, form, change)

    def is_owner(self, request: HttpRequest, obj: Classroom | None) -> bool:
        """Co-instructors run the classroom's sessions, but only its owner edits or deletes it."""
        return obj is None or request.user.is_superuser or obj.owner_id == request.user.pk

    def has_change_permission(self, request: HttpRequest, obj: Classroom | None = None) -> bool:
        return super().has_change_permission(request, obj) and self.is_owner(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: Classroom | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self.is_owner(request, obj)
