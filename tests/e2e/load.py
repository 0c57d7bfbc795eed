"""Signed inbound-SMS load: many webhooks at once (closed loop) or at a fixed rate (open loop).

With --concurrency N, at most N requests are in flight: N senders, each posting its next text
as soon as its previous one was answered (Twilio's senders, not one socket per student).

Runs as its own process so the client's CPU and GIL do not share the fake servers' (whose
threads live in the harness process); prints one JSON document with a sample per request:

    python -m tests.e2e.load --url http://127.0.0.1:8000 --token T --account-sid AC... \
        --phrase "python lab 3" --count 300 --first 0 [--rate 30] [--concurrency 32]
"""

from __future__ import annotations

import argparse
import asyncio
import json
import sys
import time
import uuid
from dataclasses import asdict, dataclass
from urllib.parse import urlencode, urlsplit

from twilio.request_validator import RequestValidator

from tests.e2e.harness import student_phone, twilio_params


@dataclass
class Sample:
    phone: str
    sid: str
    at: float  # epoch seconds when the request was sent
    started: float  # seconds after the first request was due
    latency: float  # seconds until the full answer was read
    status: int  # HTTP status, 0 for a connection error
    error: str = ""


@dataclass(frozen=True)
class _Request:
    """One webhook, signed and encoded before the clock starts."""

    phone: str
    sid: str
    wire: bytes  # the whole HTTP request as it goes on the socket


def _encode(
    host: str, path: str, public_url: str, validator: RequestValidator, params: dict[str, str]
) -> _Request:
    body = urlencode(params).encode()
    head = (
        f"POST {path} HTTP/1.1\r\n"
        f"Host: {host}\r\n"
        "Content-Type: application/x-www-form-urlencoded\r\n"
        f"Content-Length: {len(body)}\r\n"
        f"X-Twilio-Signature: {validator.compute_signature(public_url, params)}\r\n"
        "Connection: close\r\n\r\n"
    )
    return _Request(params["From"], params["MessageSid"], head.encode() + body)


async def _one(
    address: tuple[str, int],
    request: _Request,
    due: float,
    t0: float,
    epoch0: float,
    senders: asyncio.Semaphore | None = None,
) -> Sample:
    delay = t0 + due - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    if senders is None:
        return await _post(address, request, t0, epoch0)
    async with senders:
        # Latency counts from when a sender picks the text up, not while it waits its turn.
        return await _post(address, request, t0, epoch0)


async def _post(address: tuple[str, int], request: _Request, t0: float, epoch0: float) -> Sample:
    """Send one request on a connection of its own and read the whole answer.

    Plain sockets, not an HTTP client library: the generator shares the server's cores, and
    Twilio's senders cost the server's machine nothing. Its CPU per request is a fraction of
    an HTTP client's, so the figures measure the server, not the client.
    """
    started = time.perf_counter()
    try:
        status = await asyncio.wait_for(_exchange(address, request.wire), _TIMEOUT)
        error = ""
    except (TimeoutError, OSError, ValueError) as exc:
        status, error = 0, type(exc).__name__
    return Sample(
        request.phone,
        request.sid,
        epoch0 + started - t0,
        started - t0,
        time.perf_counter() - started,
        status,
        error,
    )


async def _exchange(address: tuple[str, int], wire: bytes) -> int:
    reader, writer = await asyncio.open_connection(*address)
    try:
        writer.write(wire)
        # "Connection: close": the server closes once the answer is out, so EOF ends it.
        answer = await reader.read(-1)
    finally:
        writer.close()
    # "HTTP/1.1 200 OK": a closed connection with no answer reads as b"" and fails here.
    return int(answer.split(b" ", 2)[1])


_TIMEOUT = 60.0


async def fire(
    base_url: str,
    public_base_url: str,
    token: str,
    account_sid: str,
    messages: list[tuple[str, str]],
    rate: float | None = None,
    sids: list[str] | None = None,
    concurrency: int | None = None,
) -> list[Sample]:
    """POST (phone, body) messages: all at once, or `rate` per second in order; at most
    `concurrency` in flight when given. One connection per request, as Twilio's many senders
    would open."""
    validator = RequestValidator(token)
    server = urlsplit(base_url)
    address = (server.hostname or "127.0.0.1", server.port or 80)
    path, public_url = "/twilio/sms/", public_base_url + "/twilio/sms/"
    requests = [
        _encode(
            server.netloc,
            path,
            public_url,
            validator,
            twilio_params(body, phone, sids[i] if sids else None, account_sid=account_sid),
        )
        for i, (phone, body) in enumerate(messages)
    ]
    senders = asyncio.Semaphore(concurrency) if concurrency else None
    t0 = time.perf_counter() + 0.05
    epoch0 = time.time() + 0.05
    jobs = [
        _one(address, request, i / rate if rate else 0.0, t0, epoch0, senders)
        for i, request in enumerate(requests)
    ]
    return list(await asyncio.gather(*jobs))


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--url", required=True, help="where to POST (the server's own URL)")
    parser.add_argument("--public-url", default="", help="the URL signatures cover")
    parser.add_argument("--token", required=True)
    parser.add_argument("--account-sid", default="")
    parser.add_argument("--phrase", required=True)
    parser.add_argument("--count", type=int, default=300)
    parser.add_argument("--first", type=int, default=0, help="index of the first student phone")
    parser.add_argument("--rate", type=float, default=None, help="requests per second")
    parser.add_argument(
        "--repeat", type=int, default=1, help="deliver each message this many times (same sid)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=None, help="at most this many requests in flight"
    )
    args = parser.parse_args(argv)
    messages = [(student_phone(args.first + i), args.phrase) for i in range(args.count)]
    sids = None
    if args.repeat > 1:
        # Twilio's retries of one message: identical sid and body, arriving together.
        sids = [
            sid for sid in ("SM" + uuid.uuid4().hex for _ in messages) for _ in range(args.repeat)
        ]
        messages = [m for m in messages for _ in range(args.repeat)]
    wall = time.perf_counter()
    samples = asyncio.run(
        fire(
            args.url,
            args.public_url or args.url,
            args.token,
            args.account_sid,
            messages,
            args.rate,
            sids,
            args.concurrency,
        )
    )
    json.dump(
        {"wall_seconds": time.perf_counter() - wall, "samples": [asdict(s) for s in samples]},
        sys.stdout,
    )


if __name__ == "__main__":
    main()
