"""Logging filters: request lines are logged without their query strings."""

from __future__ import annotations

import logging
import re

# A path followed by a query string, as in `"GET /admin/?q=%2B14155550123 HTTP/1.1"`.
_QUERY_STRING = re.compile(r"(/[^\s?\"]*)\?[^\s\"]*")


def without_query_strings(text: str) -> str:
    """Drop the query string of every URL path in a log line."""
    return _QUERY_STRING.sub(r"\1", text)


class DropQueryStrings(logging.Filter):
    """Rewrite a record's message without query strings: the account search takes a full phone
    number (?q=+1415...), and runserver's django.server logs each request line whole."""

    def filter(self, record: logging.LogRecord) -> bool:
        message = record.getMessage()
        scrubbed = without_query_strings(message)
        if scrubbed != message:
            record.msg, record.args = scrubbed, ()
        return True
