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

import aiohttp
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


async def _one(
    session: aiohttp.ClientSession,
    url: str,
    public_url: str,
    validator: RequestValidator,
    params: dict[str, str],
    due: float,
    t0: float,
    epoch0: float,
    senders: asyncio.Semaphore | None = None,
) -> Sample:
    delay = t0 + due - time.perf_counter()
    if delay > 0:
        await asyncio.sleep(delay)
    if senders is None:
        return await _post(session, url, public_url, validator, params, t0, epoch0)
    async with senders:
        # Latency counts from when a sender picks the text up, not while it waits its turn.
        return await _post(session, url, public_url, validator, params, t0, epoch0)


async def _post(
    session: aiohttp.ClientSession,
    url: str,
    public_url: str,
    validator: RequestValidator,
    params: dict[str, str],
    t0: float,
    epoch0: float,
) -> Sample:
    headers = {"X-Twilio-Signature": validator.compute_signature(public_url, params)}
    started = time.perf_counter()
    try:
        async with session.post(url, data=params, headers=headers) as response:
            await response.read()
            status, error = response.status, ""
    except (TimeoutError, aiohttp.ClientError) as exc:
        status, error = 0, type(exc).__name__
    return Sample(
        params["From"],
        params["MessageSid"],
        epoch0 + started - t0,
        started - t0,
        time.perf_counter() - started,
        status,
        error,
    )


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
    `concurrency` in flight when given."""
    validator = RequestValidator(token)
    url, public_url = base_url + "/twilio/sms/", public_base_url + "/twilio/sms/"
    # One connection per in-flight request, as Twilio's many senders would open.
    connector = aiohttp.TCPConnector(limit=0, force_close=True)
    timeout = aiohttp.ClientTimeout(total=60)
    senders = asyncio.Semaphore(concurrency) if concurrency else None
    async with aiohttp.ClientSession(connector=connector, timeout=timeout) as session:
        t0 = time.perf_counter() + 0.05
        epoch0 = time.time() + 0.05
        jobs = []
        for i, (phone, body) in enumerate(messages):
            sid = sids[i] if sids else None
            params = twilio_params(body, phone, sid, account_sid=account_sid)
            due = i / rate if rate else 0.0
            jobs.append(_one(session, url, public_url, validator, params, due, t0, epoch0, senders))
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
