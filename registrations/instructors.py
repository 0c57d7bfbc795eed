"""Who may use the admin, and as what: an instructor is a staff user in the Instructors group
(the group's permissions come from migration 0002); an admin is a superuser.

`createinstructor` and single sign-on (registrations/sso.py) both make instructors here, so
an instructor is the same thing whichever way the account was made.
"""

from __future__ import annotations

import enum
from typing import Any

from django.contrib.auth import get_user_model
from django.contrib.auth.models import Group
from django.db import transaction

INSTRUCTORS_GROUP = "Instructors"


class Role(enum.Enum):
    """What someone may do in the admin."""

    NONE = "none"
    INSTRUCTOR = "instructor"
    ADMIN = "admin"


class InstructorsGroupMissing(Exception):
    """The Instructors group does not exist: the migrations have not run."""


def instructors_group() -> Group:
    try:
        return Group.objects.get(name=INSTRUCTORS_GROUP)
    except Group.DoesNotExist as exc:
        missing = "The Instructors group is missing: run migrate first."
        raise InstructorsGroupMissing(missing) from exc


def create_instructor(username: str, email: str, password: str | None) -> Any:
    """Create a staff user in the Instructors group (IntegrityError if the username is taken).

    A None password makes an account that cannot log in with a password (single sign-on).
    """
    with transaction.atomic():
        user = get_user_model().objects.create_user(username, email, password)
        set_role(user, Role.INSTRUCTOR)
    return user


def set_role(user: Any, role: Role) -> None:
    """Give an existing user exactly this role: staff and group membership follow it.

    Role.NONE takes admin access away (not staff, not superuser, out of the Instructors group)
    but keeps the account, so the classrooms it owns keep their owner.
    """
    group = instructors_group()
    with transaction.atomic():
        user.is_staff = role is not Role.NONE
        user.is_superuser = role is Role.ADMIN
        user.save(update_fields=["is_staff", "is_superuser"])
        if role is Role.INSTRUCTOR:
            user.groups.add(group)
        else:
            # An admin sees everything as a superuser; membership would only list them among
            # the co-instructors one can pick.
            user.groups.remove(group)
