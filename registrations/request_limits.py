"""Refuse request bodies we would never read, from their headers alone, before anything reads them.

Django's DATA_UPLOAD_MAX_MEMORY_SIZE leaves out the file parts of a multipart body: those are
streamed to temporary files by whatever first touches request.POST (CsrfViewMiddleware, or the
Twilio signature check), so an unsigned 20 MB upload was written to disk before its 403. This
middleware sits first in MIDDLEWARE and answers from the headers:

- on Twilio's paths (`/twilio/...`), which only ever get small form posts: a body that is not
  `application/x-www-form-urlencoded` is a 415, one over the limit a 413, a body without a
  Content-Length (chunked) a 411, and an unreadable Content-Length a 400;
- anywhere else (the admin has no uploads), a multipart body over the limit is a 413.

The answer goes out without the body being read, and the server closes the connection after
it: gunicorn with a lingering close (half-close, then drain a little), so that the answer is not
lost to a reset (tests/test_request_limits.py), runserver after draining the body. Connection
is a hop-by-hop header, which a WSGI application may not set (PEP 3333; runserver refuses it),
so it is left to them.
"""

from __future__ import annotations

import logging
from collections.abc import Callable

from django.conf import settings
from django.http import HttpRequest, HttpResponse
from django.utils.http import parse_header_parameters

logger = logging.getLogger(__name__)

TWILIO_PREFIX = "/twilio/"
FORM = "application/x-www-form-urlencoded"


def body_limit() -> int | None:
    """The largest body accepted, in bytes (None: DATA_UPLOAD_MAX_MEMORY_SIZE is off)."""
    limit = settings.DATA_UPLOAD_MAX_MEMORY_SIZE
    return None if limit is None else int(limit)


def declared_length(request: HttpRequest) -> int | None:
    """The Content-Length as a number; None when absent; ValueError when it is not one."""
    raw = str(request.META.get("CONTENT_LENGTH") or "").strip()
    if not raw:
        return None
    # int() would take "+5", " 5" or "5_000"; HTTP allows only digits.
    if not raw.isascii() or not raw.isdigit():
        raise ValueError(raw)
    return int(raw)


def media_type(request: HttpRequest) -> str:
    main, _params = parse_header_parameters(str(request.META.get("CONTENT_TYPE") or ""))
    return main.strip().lower()


def refusal(request: HttpRequest) -> tuple[int, str] | None:
    """Why the request's body must not be read (status and message), or None to let it in."""
    twilio = request.path_info.startswith(TWILIO_PREFIX)
    kind = media_type(request)
    if not twilio and not kind.startswith("multipart/"):
        return None
    try:
        length = declared_length(request)
    except ValueError:
        return 400, "Invalid Content-Length."
    if length is None and twilio and request.META.get("HTTP_TRANSFER_ENCODING"):
        # Django reads a body by its Content-Length only; a chunked one would arrive empty.
        return 411, "Content-Length required."
    if not length:
        return None  # no body: nothing to protect (a GET still gets its 405 from the view)
    limit = body_limit()
    if limit is not None and length > limit:
        return 413, f"Request body too large (over {limit} bytes)."
    if twilio and kind != FORM:
        return 415, f"Only {FORM} is accepted."
    return None


class RequestBodyLimitMiddleware:
    """Answer 4xx to a body we would refuse, from its headers, before anything reads it."""

    def __init__(self, get_response: Callable[[HttpRequest], HttpResponse]) -> None:
        self.get_response = get_response

    def __call__(self, request: HttpRequest) -> HttpResponse:
        refused = refusal(request)
        if refused is None:
            return self.get_response(request)
        status, message = refused
        # Like the signature check: the reason only, never the body or the sender.
        logger.warning("refused a request to %s unread: %s", request.path, message)
        return HttpResponse(message, status=status, content_type="text/plain")
