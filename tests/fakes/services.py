"""Fake Coder and fake Twilio together, for trying the app on one machine (`make fake-services`).

    python -m tests.fakes.services [--coder-port 7080] [--twilio-port 7090] [--app-url URL]

Runs both fakes in the foreground until Ctrl-C and prints the settings that point the app at
them; it also writes them to var/fake-services.env, for `source var/fake-services.env` in the
terminals that run the app and its commands. The fake Twilio keeps every SMS the app sends
and shows them at /inbox; it posts signed status callbacks to the app, so the roster shows
each SMS as delivered. The fake Coder logs students in through Coder's own login route
(POST /api/v2/users/login with the email and the password of their SMS).
"""

from __future__ import annotations

import argparse
import signal
import sys
import threading
from pathlib import Path

from tests.fakes.coder import FakeCoder
from tests.fakes.twilio import FakeTwilio

# Twilio's magic test number: a valid "From" that any Twilio test account accepts.
FROM_NUMBER = "+15005550006"
ENV_FILE = Path(__file__).resolve().parents[2] / "var" / "fake-services.env"


def app_settings(coder: FakeCoder, twilio: FakeTwilio, app_url: str) -> dict[str, str]:
    """The app's settings that point it at these fakes (what `make run` needs to use them)."""
    return {
        "CODER_URL": coder.url,
        "CODER_SESSION_TOKEN": coder.token,
        "TWILIO_API_BASE_URL": twilio.url,
        "TWILIO_ACCOUNT_SID": twilio.account_sid,
        "TWILIO_AUTH_TOKEN": twilio.auth_token,
        "TWILIO_FROM_NUMBER": FROM_NUMBER,
        # What the fake Twilio posts status callbacks to, and what the app checks signatures
        # against: the local app's own address.
        "PUBLIC_BASE_URL": app_url.rstrip("/"),
    }


def export_lines(settings: dict[str, str]) -> list[str]:
    """`export NAME=value` lines: for a shell's `source`, and .env accepts them too."""
    return [f"export {name}={value}" for name, value in settings.items()]


def banner(coder: FakeCoder, twilio: FakeTwilio, app_url: str, env_file: Path | None) -> str:
    lines = [
        "",
        f"  Fake Coder   {coder.url}   (students log in: POST {coder.url}/api/v2/users/login)",
        f"  Fake Twilio  {twilio.url}   (every SMS sent: {twilio.url}/inbox)",
        "",
        "  The settings that point the app at them:",
        "",
        *export_lines(app_settings(coder, twilio, app_url)),
        "",
    ]
    if env_file is not None:
        lines += [
            f"  They are in {env_file} too. In each terminal that runs the app or its commands:",
            f"      source {env_file}",
            "  then `make run` (or `make instructor`, `manage.py simulate_text ...`).",
            "",
        ]
    lines += ["  Ctrl-C stops both fakes (their data lives in memory only).", ""]
    return "\n".join(lines)


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake Coder and a fake Twilio together.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--coder-port", type=int, default=7080)
    parser.add_argument("--twilio-port", type=int, default=7090)
    parser.add_argument(
        "--app-url",
        default="http://127.0.0.1:8000",
        help="where the app runs (`make run` serves on port 8000)",
    )
    parser.add_argument(
        "--env-file",
        default=str(ENV_FILE),
        help="where to write the settings as export lines ('' to write none)",
    )
    args = parser.parse_args(argv)
    coder = FakeCoder(host=args.host, port=args.coder_port)
    coder.add_template("docker")
    twilio = FakeTwilio(
        host=args.host,
        port=args.twilio_port,
        deliver_callbacks=True,
        callback_delay=0.5,
        inbox=True,
    )
    coder.start()
    twilio.start()
    env_file = Path(args.env_file) if args.env_file else None
    if env_file is not None:
        env_file.parent.mkdir(parents=True, exist_ok=True)
        lines = export_lines(app_settings(coder, twilio, args.app_url))
        env_file.write_text("# Written by make fake-services.\n" + "\n".join(lines) + "\n")
    print(banner(coder, twilio, args.app_url, env_file), flush=True)
    signal.signal(signal.SIGTERM, lambda *_: sys.exit(0))
    try:
        threading.Event().wait()
    except (KeyboardInterrupt, SystemExit):
        pass
    finally:
        twilio.stop()
        coder.stop()


if __name__ == "__main__":
    main()
