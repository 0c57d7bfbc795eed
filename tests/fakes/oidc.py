"""A fake OpenID Connect provider: real HTTP on 127.0.0.1, RS256-signed ID tokens, no network.

It serves what the app's single sign-on uses (registrations/sso.py):

    GET  /.well-known/openid-configuration   discovery
    GET  /authorize    consents at once for `provider.user` and redirects back with code+state
    POST /token        checks client, secret, code, redirect_uri and PKCE; issues the ID token
    GET  /userinfo     the user's claims, for the access token
    GET  /jwks         the public key

The person who "logs in" is whoever `provider.user` names when /authorize is called (a dict of
claims: sub, email, email_verified, groups, preferred_username, ...). Tests can also make the
provider misbehave: `deny` answers /authorize with error=access_denied, `token_overrides` is
merged into the next ID tokens' claims (a wrong nonce, audience, issuer...), `sign_with` signs
them with another key, and `userinfo_overrides` changes what /userinfo says.

    python -m tests.fakes.oidc --port 7100 --groups instructors   # to try SSO locally
"""

from __future__ import annotations

import argparse
import base64
import hashlib
import json
import secrets
import signal
import threading
import time
from dataclasses import dataclass
from typing import Any
from urllib.parse import parse_qs, urlencode

import jwt
from cryptography.hazmat.primitives.asymmetric import rsa

from tests.fakes import BaseFakeServer, FakeRequest, FakeResponse

DEFAULT_CLIENT_ID = "classroom-sms"
DEFAULT_CLIENT_SECRET = "fake-oidc-client-secret"


def new_key() -> rsa.RSAPrivateKey:
    return rsa.generate_private_key(public_exponent=65537, key_size=2048)


def _b64(data: bytes) -> str:
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


@dataclass
class Grant:
    """An authorization code handed out by /authorize, until /token redeems it."""

    claims: dict[str, Any]
    client_id: str
    redirect_uri: str
    nonce: str | None
    code_challenge: str | None
    code_challenge_method: str | None


class FakeOidcProvider(BaseFakeServer):
    def __init__(
        self,
        *,
        client_id: str = DEFAULT_CLIENT_ID,
        client_secret: str = DEFAULT_CLIENT_SECRET,
        user: dict[str, Any] | None = None,
        **kwargs: Any,
    ) -> None:
        super().__init__(**kwargs)
        self.client_id = client_id
        self.client_secret = client_secret
        self.user: dict[str, Any] = user or {
            "sub": "ada-0001",
            "email": "ada@example.edu",
            "email_verified": True,
            "preferred_username": "ada",
            "name": "Ada Lovelace",
            "groups": ["instructors"],
        }
        self.key = new_key()
        # None: neither the key nor the tokens name a key id.
        self.kid: str | None = "fake-key-1"
        self.deny = False
        self.token_overrides: dict[str, Any] = {}
        self.userinfo_overrides: dict[str, Any] = {}
        self.sign_with: rsa.RSAPrivateKey | None = None
        self.grants: dict[str, Grant] = {}
        self.access_tokens: dict[str, dict[str, Any]] = {}
        # What happened, for tests to look at: (endpoint, detail) pairs, and every path asked.
        self.events: list[tuple[str, str]] = []
        self.paths: list[str] = []

    @property
    def issuer(self) -> str:
        return self.url

    def jwks(self) -> dict[str, Any]:
        numbers = self.key.public_key().public_numbers()
        key = {
            "kty": "RSA",
            "use": "sig",
            "alg": "RS256",
            "n": _b64(numbers.n.to_bytes((numbers.n.bit_length() + 7) // 8, "big")),
            "e": _b64(numbers.e.to_bytes((numbers.e.bit_length() + 7) // 8, "big")),
        }
        return {"keys": [key if self.kid is None else {**key, "kid": self.kid}]}

    def received(self, request: FakeRequest) -> None:
        self.paths.append(request.path)

    def dispatch(self, request: FakeRequest) -> FakeResponse:
        routes = {
            ("GET", "/.well-known/openid-configuration"): self._discovery,
            ("GET", "/authorize"): self._authorize,
            ("POST", "/token"): self._token,
            ("GET", "/userinfo"): self._userinfo,
            ("GET", "/jwks"): lambda request: FakeResponse(200, self.jwks()),
        }
        handler = routes.get((request.method, request.path))
        if handler is None:
            return FakeResponse(404, {"error": "not_found"})
        return handler(request)

    def _discovery(self, request: FakeRequest) -> FakeResponse:
        return FakeResponse(
            200,
            {
                "issuer": self.issuer,
                "authorization_endpoint": self.url + "/authorize",
                "token_endpoint": self.url + "/token",
                "userinfo_endpoint": self.url + "/userinfo",
                "jwks_uri": self.url + "/jwks",
                "response_types_supported": ["code"],
                "subject_types_supported": ["public"],
                "id_token_signing_alg_values_supported": ["RS256"],
                "code_challenge_methods_supported": ["S256"],
                "token_endpoint_auth_methods_supported": [
                    "client_secret_post",
                    "client_secret_basic",
                ],
            },
        )

    def _authorize(self, request: FakeRequest) -> FakeResponse:
        redirect_uri = request.param("redirect_uri")
        if request.param("client_id") != self.client_id or not redirect_uri:
            self.events.append(("authorize", "unknown client"))
            return FakeResponse(400, {"error": "invalid_request"})
        state = request.param("state")
        if self.deny:
            self.events.append(("authorize", "denied"))
            query = urlencode({"error": "access_denied", "state": state})
            return FakeResponse(302, headers={"Location": f"{redirect_uri}?{query}"})
        code = secrets.token_urlsafe(24)
        self.grants[code] = Grant(
            claims=dict(self.user),
            client_id=self.client_id,
            redirect_uri=redirect_uri,
            nonce=request.param("nonce") or None,
            code_challenge=request.param("code_challenge") or None,
            code_challenge_method=request.param("code_challenge_method") or None,
        )
        self.events.append(("authorize", str(self.user.get("sub"))))
        query = urlencode({"code": code, "state": state})
        return FakeResponse(302, headers={"Location": f"{redirect_uri}?{query}"})

    def _client_credentials(self, request: FakeRequest, form: dict[str, str]) -> tuple[str, str]:
        header = request.header("authorization")
        if header.lower().startswith("basic "):
            client_id, _, secret = base64.b64decode(header[6:]).decode().partition(":")
            return client_id, secret
        return form.get("client_id", ""), form.get("client_secret", "")

    def _token(self, request: FakeRequest) -> FakeResponse:
        form = {k: v[0] for k, v in parse_qs(request.body.decode()).items()}
        client_id, secret = self._client_credentials(request, form)
        if client_id != self.client_id or secret != self.client_secret:
            self.events.append(("token", "bad client"))
            return FakeResponse(401, {"error": "invalid_client"})
        grant = self.grants.pop(form.get("code", ""), None)  # a code is good once
        if form.get("grant_type") != "authorization_code" or grant is None:
            self.events.append(("token", "bad code"))
            return FakeResponse(400, {"error": "invalid_grant"})
        if form.get("redirect_uri") != grant.redirect_uri:
            self.events.append(("token", "bad redirect_uri"))
            return FakeResponse(400, {"error": "invalid_grant"})
        if grant.code_challenge is not None:
            verifier = form.get("code_verifier", "")
            expected = _b64(hashlib.sha256(verifier.encode()).digest())
            if grant.code_challenge_method != "S256" or expected != grant.code_challenge:
                self.events.append(("token", "bad PKCE"))
                return FakeResponse(400, {"error": "invalid_grant"})
        access_token = secrets.token_urlsafe(24)
        self.access_tokens[access_token] = grant.claims
        self.events.append(("token", str(grant.claims.get("sub"))))
        return FakeResponse(
            200,
            {
                "access_token": access_token,
                "token_type": "Bearer",
                "expires_in": 300,
                "id_token": self.id_token(grant.claims, grant.nonce),
            },
        )

    def id_token(self, claims: dict[str, Any], nonce: str | None) -> str:
        now = int(time.time())
        payload = {
            **claims,
            "iss": self.issuer,
            "aud": self.client_id,
            "iat": now,
            "exp": now + 300,
            "auth_time": now,
            **({"nonce": nonce} if nonce else {}),
            **self.token_overrides,
        }
        key = self.sign_with or self.key
        headers = {} if self.kid is None else {"kid": self.kid}
        return jwt.encode(payload, key, algorithm="RS256", headers=headers)

    def _userinfo(self, request: FakeRequest) -> FakeResponse:
        header = request.header("authorization")
        claims = self.access_tokens.get(header[7:] if header.startswith("Bearer ") else "")
        if claims is None:
            return FakeResponse(401, {"error": "invalid_token"})
        return FakeResponse(200, {**claims, **self.userinfo_overrides})


def main(argv: list[str] | None = None) -> None:
    parser = argparse.ArgumentParser(description="Run a fake OpenID Connect provider.")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=7100)
    parser.add_argument("--email", default="ada@example.edu")
    parser.add_argument("--groups", default="instructors", help="comma-separated")
    args = parser.parse_args(argv)
    provider = FakeOidcProvider(host=args.host, port=args.port)
    provider.user = {
        "sub": hashlib.sha256(args.email.encode()).hexdigest()[:16],
        "email": args.email,
        "email_verified": True,
        "preferred_username": args.email.split("@")[0],
        "groups": [group for group in args.groups.split(",") if group],
    }
    with provider:
        settings = {
            "OIDC_OP_ISSUER": provider.issuer,
            "OIDC_RP_CLIENT_ID": provider.client_id,
            "OIDC_RP_CLIENT_SECRET": provider.client_secret,
            "OIDC_INSTRUCTOR_GROUPS": "instructors",
            "OIDC_ADMIN_GROUPS": "admins",
        }
        print(f"Fake OpenID Connect provider at {provider.url}; it logs everyone in as")
        print("  " + json.dumps(provider.user))
        print("The app's settings for it:")
        for name, value in settings.items():
            print(f"export {name}={value}")
        stop = threading.Event()
        signal.signal(signal.SIGINT, lambda *_: stop.set())
        signal.signal(signal.SIGTERM, lambda *_: stop.set())
        stop.wait()


if __name__ == "__main__":
    main()
