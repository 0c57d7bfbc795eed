"""Instructor scoping: which classrooms a user may see, and a ModelAdmin base that enforces it."""

from __future__ import annotations

from typing import Any, TypeVar

from django.contrib import admin
from django.contrib.admin.utils import get_fields_from_path
from django.contrib.auth.models import AnonymousUser, User
from django.db.models import DateField, Model, Q, QuerySet
from django.db.models.fields.related import RelatedField
from django.http import HttpRequest

from registrations.models import Account, Classroom, InboundMessage, OutboundMessage, Session

# Messages reach a classroom through their session or, when that is unset, their account.
MESSAGE_PATHS = ("session__classroom", "account__session__classroom")

ModelT = TypeVar("ModelT", bound=Model)
# Who is asking: request.user, as django-stubs types it for the default user model.
AnyUser = User | AnonymousUser


def classrooms_for(user: AnyUser) -> QuerySet[Classroom]:
    """Return the classrooms a user may see: all for superusers, else owned or co-taught ones."""
    if user.is_superuser:
        return Classroom.objects.all()
    if not user.is_authenticated:
        return Classroom.objects.none()
    # A subquery instead of a join on co_instructors: no duplicate rows, no DISTINCT needed.
    co_taught = Classroom.co_instructors.through.objects.filter(user=user).values("classroom_id")
    return Classroom.objects.filter(Q(owner=user) | Q(pk__in=co_taught))


def scope_queryset(
    queryset: QuerySet[ModelT], user: AnyUser, paths: tuple[str, ...]
) -> QuerySet[ModelT]:
    """Keep the rows reachable from one of the user's classrooms through any of `paths`."""
    if user.is_superuser:
        return queryset
    visible = classrooms_for(user).values("pk")
    condition = Q(pk__in=[])
    for path in paths:
        condition |= Q(**{f"{path}__in": visible})
    return queryset.filter(condition)


def sessions_for(user: AnyUser) -> QuerySet[Session]:
    return scope_queryset(Session.objects.all(), user, ("classroom",))


def accounts_for(user: AnyUser) -> QuerySet[Account]:
    return scope_queryset(Account.objects.all(), user, ("session__classroom",))


def inbound_for(user: AnyUser) -> QuerySet[InboundMessage]:
    return scope_queryset(InboundMessage.objects.all(), user, MESSAGE_PATHS)


def outbound_for(user: AnyUser) -> QuerySet[OutboundMessage]:
    return scope_queryset(OutboundMessage.objects.all(), user, MESSAGE_PATHS)


# Foreign-key targets whose choices are narrowed to what the user may see.
SCOPED_CHOICES = {Classroom: classrooms_for, Session: sessions_for, Account: accounts_for}


def filter_parameters(model_admin: admin.ModelAdmin[Any], request: HttpRequest) -> set[str]:
    """Name the query parameters the admin's own list filters and date hierarchy send."""
    names: set[str] = set()
    for item in model_admin.get_list_filter(request):
        if isinstance(item, type) and issubclass(item, admin.SimpleListFilter):
            names.add(item.parameter_name or "")
            continue
        path = str(item[0] if isinstance(item, (list, tuple)) else item)
        field = get_fields_from_path(model_admin.model, path)[-1]
        # The parameters of Django's field filters (admin/filters.py) for this kind of field.
        names |= {path, f"{path}__exact", f"{path}__isnull"}
        if isinstance(field, RelatedField):
            names.add(f"{path}__{field.target_field.name}__exact")
        if isinstance(field, DateField):
            names |= {f"{path}__gte", f"{path}__lt"}
    if hierarchy := model_admin.date_hierarchy:
        names |= {f"{hierarchy}__year", f"{hierarchy}__month", f"{hierarchy}__day"}
    return names


class FilterOnlyAdmin(admin.ModelAdmin[ModelT]):
    """A ModelAdmin whose changelist filters only through its own filters and date hierarchy.

    Django allows any lookup on a local field by default: `?phone__startswith=+1415` would let
    a user recover a masked phone number digit by digit, bypassing the logged reveal. Anything
    else answers 400 (DisallowedModelAdminLookup), for superusers too.
    """

    def lookup_allowed(self, lookup: str, value: str, request: HttpRequest | None = None) -> bool:
        if request is None:
            return False
        return lookup in filter_parameters(self, request)


class ScopedAdmin(FilterOnlyAdmin[ModelT]):
    """A ModelAdmin whose rows, object permissions and foreign-key choices follow the user's
    classrooms. `classroom_paths` are the lookups from this model to its Classroom."""

    classroom_paths: tuple[str, ...] = ()

    def get_queryset(self, request: HttpRequest) -> QuerySet[ModelT]:
        return scope_queryset(super().get_queryset(request), request.user, self.classroom_paths)

    def in_scope(self, request: HttpRequest, obj: ModelT | None) -> bool:
        """Say whether the object (None: the model in general) is one of the user's."""
        if obj is None or request.user.is_superuser:
            return True
        return self.get_queryset(request).filter(pk=obj.pk).exists()

    def has_view_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return super().has_view_permission(request, obj) and self.in_scope(request, obj)

    def has_change_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return super().has_change_permission(request, obj) and self.in_scope(request, obj)

    def has_delete_permission(self, request: HttpRequest, obj: ModelT | None = None) -> bool:
        return super().has_delete_permission(request, obj) and self.in_scope(request, obj)

    def formfield_for_foreignkey(self, db_field: Any, request: HttpRequest, **kwargs: Any) -> Any:
        scoped = SCOPED_CHOICES.get(db_field.related_model)
        if scoped and "queryset" not in kwargs:
            kwargs["queryset"] = scoped(request.user)
        return super().formfield_for_foreignkey(db_field, request, **kwargs)
