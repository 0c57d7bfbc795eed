"""Bodies we would never read are refused from their headers, before anything reads them."""

from __future__ import annotations

import os
import signal
import socket
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest
import requests
from django.test import Client

from registrations.models import InboundMessage
from tests.conftest import PUBLIC_BASE_URL, sign, twilio_params
from tests.e2e.harness import free_port, wait_for
from tests.upload_spy import SPY

ROOT = Path(__file__).resolve().parent.parent
URL = PUBLIC_BASE_URL + "/twilio/sms/"
FORM = "application/x-www-form-urlencoded"
BOUNDARY = "xyz"
BIG = 20 * 1024 * 1024
CSRF_COOKIE = "a" * 32


def multipart(size: int) -> bytes:
    head = (f'--{BOUNDARY}\r\nContent-Disposition: form-data; name="f"; filename="a.bin"\r\n'
            "Content-Type: application/octet-stream\r\n\r\n").encode()
    return head + b"x" * size + f"\r\n--{BOUNDARY}--\r\n".encode()


@pytest.fixture
def spool(settings, tmp_path) -> Path:
    """Uploads spool to an empty directory, and each one started leaves a mark there."""
    settings.FILE_UPLOAD_TEMP_DIR = str(tmp_path)
    settings.FILE_UPLOAD_HANDLERS = [SPY]
    settings.FILE_UPLOAD_MAX_MEMORY_SIZE = 0  # every file part would go to disk
    return tmp_path


def post(client: Client, path: str, body: bytes, content_type: str, **extra: str):
    return client.generic("POST", path, body, content_type=content_type, **extra)


@pytest.mark.parametrize("path", ["/twilio/sms/", "/twilio/status/"])
def test_an_unsigned_upload_to_twilio_is_refused_unread(client, twilio_settings, spool, path):
    # A signature, however bogus, is what made the signature check read (and spool) the body.
    response = post(client, path, multipart(1000), f"multipart/form-data; boundary={BOUNDARY}",
                    HTTP_X_TWILIO_SIGNATURE="bogus")

    assert response.status_code == 415
    assert list(spool.iterdir()) == []


def test_an_upload_over_the_limit_anywhere_is_refused_unread(client, db, spool):
    csrf = Client(enforce_csrf_checks=True)
    csrf.cookies["csrftoken"] = CSRF_COOKIE  # with a cookie, CSRF reads the form for the token

    response = post(csrf, "/admin/login/", multipart(300 * 1024),
                    f"multipart/form-data; boundary={BOUNDARY}")

    assert response.status_code == 413
    assert list(spool.iterdir()) == []


@pytest.mark.parametrize("content_type", ["application/json", "text/plain", "", "text/xml"])
def test_other_content_types_are_unsupported(client, twilio_settings, db, content_type):
    response = post(client, "/twilio/sms/", b'{"Body": "hi"}', content_type)

    assert response.status_code == 415
    assert not InboundMessage.objects.exists()


def test_a_declared_length_over_the_limit_is_refused_without_reading(client, twilio_settings):
    # The body sent is tiny: only the header is looked at.
    response = post(client, "/twilio/sms/", b"Body=hi", FORM, CONTENT_LENGTH=str(10**9))

    assert response.status_code == 413


@pytest.mark.parametrize("length", ["abc", "-1", "+5", "1e3", "5 5"])
def test_an_invalid_content_length_is_a_bad_request(client, twilio_settings, length):
    response = post(client, "/twilio/sms/", b"Body=hi", FORM, CONTENT_LENGTH=length)

    assert response.status_code == 400


def test_a_chunked_body_needs_a_length(client, twilio_settings):
    response = post(client, "/twilio/sms/", b"", FORM, CONTENT_LENGTH="",
                    HTTP_TRANSFER_ENCODING="chunked")

    assert response.status_code == 411


def test_a_signed_form_with_a_charset_still_goes_through(client, twilio_settings, open_session):
    params = twilio_params("python lab 3")
    body = "&".join(f"{k}={requests.utils.quote(v)}" for k, v in params.items()).encode()

    response = post(client, "/twilio/sms/", body, FORM + "; charset=utf-8",
                    HTTP_X_TWILIO_SIGNATURE=sign(URL, params))

    assert response.status_code == 200
    assert InboundMessage.objects.count() == 1


SPY_SETTINGS = """
from classroom_sms.settings import *  # noqa
FILE_UPLOAD_TEMP_DIR = {spool!r}
FILE_UPLOAD_HANDLERS = [{spy!r}]
FILE_UPLOAD_MAX_MEMORY_SIZE = 0
"""


@pytest.fixture
def gunicorn(tmp_path: Path) -> Iterator[tuple[str, Path]]:
    """scripts/run (gunicorn and qcluster) on its own SQLite database, spooling into `spool`."""
    spool = tmp_path / "spool"
    spool.mkdir()
    (tmp_path / "spy_settings.py").write_text(SPY_SETTINGS.format(spool=str(spool), spy=SPY))
    port = free_port()
    env = {
        **os.environ, "ENV_FILE": "", "SECRET_KEY": "request-limits-test", "DEBUG": "1",
        "DATABASE_URL": f"sqlite:///{tmp_path / 'db.sqlite3'}", "REDIS_URL": "",
        "PORT": str(port), "WEB_CONCURRENCY": "1", "Q_WORKERS": "1",
        "Q_CLUSTER_NAME": f"request-limits-{os.getpid()}", "TWILIO_AUTH_TOKEN": "token",
        "PYTHONPATH": f"{tmp_path}{os.pathsep}{ROOT}", "DJANGO_SETTINGS_MODULE": "spy_settings",
    }
    subprocess.run([sys.executable, "manage.py", "migrate", "--noinput", "-v", "0"],
                   cwd=ROOT, env=env, check=True, timeout=120)
    with open(tmp_path / "run.log", "wb") as log:
        popen = subprocess.Popen(["bash", "scripts/run"], cwd=ROOT, env=env,
                                 stdin=subprocess.DEVNULL, stdout=log, stderr=subprocess.STDOUT,
                                 start_new_session=True)
    base = f"http://127.0.0.1:{port}"

    def up() -> bool:
        try:
            return requests.get(base + "/healthz", timeout=2).status_code in (200, 503)
        except requests.RequestException:
            return False

    try:
        wait_for(up, timeout=60, what="gunicorn to serve")
        yield base, spool
    finally:
        os.killpg(popen.pid, signal.SIGINT)
        try:
            popen.wait(timeout=30)
        except subprocess.TimeoutExpired:
            os.killpg(popen.pid, signal.SIGKILL)


@pytest.mark.e2e
def test_through_gunicorn_a_20_mb_upload_gets_its_answer_and_nothing_is_spooled(gunicorn):
    base, spool = gunicorn
    headers = {"Content-Type": f"multipart/form-data; boundary={BOUNDARY}",
               "X-Twilio-Signature": "bogus"}

    for path in ("/twilio/sms/", "/admin/login/"):
        response = requests.post(base + path, data=multipart(BIG), headers=headers,
                                 cookies={"csrftoken": CSRF_COOKIE}, timeout=30)
        assert response.status_code in (413, 415), path

    # A raw client that sends the headers and only the start of the body still gets the answer.
    with socket.create_connection(("127.0.0.1", int(base.rsplit(":", 1)[1])), timeout=10) as raw:
        raw.sendall(b"POST /twilio/sms/ HTTP/1.1\r\nHost: 127.0.0.1\r\n"
                    b"Content-Type: multipart/form-data; boundary=xyz\r\n"
                    + f"Content-Length: {BIG}\r\n\r\n".encode() + b"x" * 65536)
        answer = raw.recv(4096)
    assert answer.startswith(b"HTTP/1.1 413 ")
    assert list(spool.iterdir()) == []
