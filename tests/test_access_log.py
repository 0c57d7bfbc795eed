"""Request logs name paths, never query strings: a search for a phone leaves no digits behind."""

from __future__ import annotations

import logging
import os
import signal
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests

from registrations.log_filters import DropQueryStrings
from tests.test_compose import dockerfile_cmd
from tests.test_make_run import clean_up, prepare, start

DIGITS = "4155550123"
SEARCH = f"/admin/registrations/account/?q=%2B1{DIGITS}"


@pytest.fixture
def runner(tmp_path: Path) -> Iterator[dict]:
    state = prepare(tmp_path, "log")
    yield state
    clean_up(state)


@pytest.mark.e2e
def test_gunicorns_access_log_has_no_query_string(runner):
    popen = start(runner)
    base = f"http://127.0.0.1:{runner['env']['PORT']}"
    # Not logged in: the search redirects to the login page, whose ?next= repeats it.
    response = requests.get(base + SEARCH, timeout=10)
    assert response.status_code == 200 and "/admin/login/" in response.url
    os.killpg(popen.pid, signal.SIGTERM)
    popen.wait(timeout=30)
    log = runner["log"].read_text()
    assert '"GET /admin/registrations/account/ HTTP/1.1" 302' in log
    assert '"GET /admin/login/ HTTP/1.1" 200' in log
    assert DIGITS not in log


def test_the_docker_image_runs_gunicorn_with_the_same_config():
    assert "--config gunicorn.conf.py" in " ".join(dockerfile_cmd())


def test_runservers_request_lines_lose_their_query_strings(caplog):
    logger = logging.getLogger("django.server")
    assert any(isinstance(f, DropQueryStrings) for f in logger.filters)
    logger.addHandler(caplog.handler)
    try:
        logger.info('"%s" %s %s', f"GET {SEARCH} HTTP/1.1", "200", "512")
    finally:
        logger.removeHandler(caplog.handler)
    assert caplog.messages == ['"GET /admin/registrations/account/ HTTP/1.1" 200 512']


def test_django_request_warnings_lose_their_query_strings(caplog):
    with caplog.at_level(logging.WARNING, logger="django.request"):
        logging.getLogger("django.request").warning("Not Found: %s", SEARCH)
    assert caplog.messages == ["Not Found: /admin/registrations/account/"]
