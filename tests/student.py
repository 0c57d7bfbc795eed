"""A student with a phone: read the credentials off the SMS and log in to Coder over HTTP.

This is what the texted credentials must survive, so tests use it instead of any shortcut into
the fake: Coder's password login (coderd/userauth.go postLogin) takes the *email address* and
the password, never the username, and needs no session token.
"""

from __future__ import annotations

import re
from typing import Any, Protocol

import requests

TIMEOUT_SECONDS = 10.0

# A line starting with the label, then ":" or white space, then the value (up to white space).
_EMAIL_LINE = re.compile(r"^[ \t]*Email(?:[ \t]*:[ \t]*|[ \t]+)(\S+)", re.MULTILINE)
_PASSWORD_LINE = re.compile(r"^[ \t]*Password(?:[ \t]*:[ \t]*|[ \t]+)(\S+)", re.MULTILINE)


class CoderServer(Protocol):
    """What the helpers need of a (fake) Coder: its base URL and an owner's session token."""

    url: str
    token: str


def credentials_from_sms(body: str) -> tuple[str, str]:
    """(email, password) as a student copies them from the SMS; AssertionError if either is missing.

    The email is the token after a line labelled `Email` or `Email:` and must contain "@" (a
    username there is not something Coder's login accepts); the password is the token after
    `Password` or `Password:`.
    """
    email = _EMAIL_LINE.search(body)
    password = _PASSWORD_LINE.search(body)
    if email is None or "@" not in email.group(1):
        raise AssertionError(f"no email address to log in with in the SMS: {body!r}")
    if password is None:
        raise AssertionError(f"no password in the SMS: {body!r}")
    return email.group(1), password.group(1)


def log_in(coder_base_url: str, email: str, password: str) -> requests.Response:
    """POST {base}/api/v2/users/login {"email", "password"} with no token; the login's answer.

    On success the student then lands on the dashboard, which asks for GET /api/v2/users/me
    with the new session token. That first use of the key is what moves the user's
    last_seen_at in Coder (coderd/httpmw/apikey.go ExtractAPIKey); the login alone does not.
    """
    base = coder_base_url.rstrip("/") + "/api/v2"
    response = requests.post(
        base + "/users/login",
        json={"email": email, "password": password},
        timeout=TIMEOUT_SECONDS,
    )
    if response.status_code == 201:
        token = response.json()["session_token"]
        requests.get(
            base + "/users/me", headers={"Coder-Session-Token": token}, timeout=TIMEOUT_SECONDS
        )
    return response


def logs_in(coder_base_url: str, sms_body: str) -> bool:
    """True when the credentials in this SMS log in to Coder (201 with a session token)."""
    email, password = credentials_from_sms(sms_body)
    return log_in(coder_base_url, email, password).status_code == 201


def rename_in_coder(coder: CoderServer, user: str, username: str) -> dict[str, Any]:
    """Rename a Coder user (id, username or "me") as its account settings page does.

    PUT /users/{user}/profile (coderd/users.go putUserProfile) writes both fields, and a
    missing `name` clears the display name, so the current name is sent along, as the form does.
    """
    base = coder.url.rstrip("/") + "/api/v2/users/" + user
    headers = {"Coder-Session-Token": coder.token}
    current = requests.get(base, headers=headers, timeout=TIMEOUT_SECONDS)
    assert current.status_code == 200, current.text
    response = requests.put(
        base + "/profile",
        json={"username": username, "name": current.json()["name"]},
        headers=headers,
        timeout=TIMEOUT_SECONDS,
    )
    assert response.status_code == 200, response.text
    return response.json()
