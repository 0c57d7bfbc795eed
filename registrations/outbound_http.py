"""The HTTP sessions we call Coder and Twilio with, set up once per process."""

from __future__ import annotations

import os

import requests
from requests.utils import get_environ_proxies


def settle_environment(session: requests.Session, url: str) -> requests.Session:
    """Read the proxy and CA bundle settings from the environment now, once, for `url`.

    requests looks them up again on every request (`merge_environment_settings` walks the
    environment and the proxy bypass list each time), which was a third of a worker's CPU per
    call to Coder or Twilio in a class burst. The same settings apply: HTTPS_PROXY, HTTP_PROXY
    and NO_PROXY, REQUESTS_CA_BUNDLE or CURL_CA_BUNDLE; only a change to them while the process
    runs is no longer seen.
    """
    session.proxies.update(get_environ_proxies(url))
    bundle = os.environ.get("REQUESTS_CA_BUNDLE") or os.environ.get("CURL_CA_BUNDLE")
    if bundle and session.verify is True:
        session.verify = bundle
    session.trust_env = False
    return session
