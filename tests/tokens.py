"""Token mode in the tests: the kinds of key (an HS256 secret, and RSA and EC
key pairs made here with cryptography, once per test process), the tokens
signed with them, forged ones, and the routes of a room that need a token."""

import base64
import functools
import hashlib
import hmac
import json
import time
from dataclasses import dataclass

import jwt
from cryptography.hazmat.primitives import serialization
from cryptography.hazmat.primitives.asymmetric import ec, rsa

from tests.conftest import AUTH_KEY


# The HTTP routes of a room: method, path, whether they answer errors as JSON
# (else as a page), and their status once admitted. The WebSocket and the
# event stream are tested apart, each with its own client.
ROOM_ROUTES = [
    ("GET", "/refresh", False, 302),
    ("GET", "/refresh/room", False, 200),
    ("POST", "/refresh/room", False, 303),
    ("GET", "/refresh/room/leave", False, 302),
    ("GET", "/longpolling", False, 302),
    ("GET", "/longpolling/room", False, 200),
    ("GET", "/longpolling/room/leave", False, 302),
    ("GET", "/longpolling/room/messages", True, 200),
    ("POST", "/longpolling/room/messages", True, 201),
    ("GET", "/websocket/room", False, 200),
    ("GET", "/sse/room", False, 200),
    ("POST", "/sse/room/messages", True, 201),
    ("GET", "/presence", True, 200),
]


def route_id(route):
    return f"{route[0]} {route[1]}"


@dataclass(frozen=True)
class Family:
    """One way of signing: what the server is configured with, and how the application signs."""

    name: str            # the algorithm the server accepts
    env: dict            # the server's environment for it
    signing_key: object  # what the application signs with
    public_pem: str | None = None

    def sign(self, user="ada", algorithm=None, key=None, **claims):
        """A token for user with claims, signed as the application does (or as told)."""
        return jwt.encode({"sub": user, **claims}, key or self.signing_key,
                          algorithm=algorithm or self.name)

    def expiring(self, user, seconds, **claims):
        """A token for user that expires in `seconds`."""
        return self.sign(user, exp=int(time.time() + seconds), **claims)


def _pems(private_key):
    private = private_key.private_bytes(serialization.Encoding.PEM,
                                        serialization.PrivateFormat.PKCS8,
                                        serialization.NoEncryption()).decode()
    public = private_key.public_key().public_bytes(
        serialization.Encoding.PEM, serialization.PublicFormat.SubjectPublicKeyInfo).decode()
    return private, public


@functools.cache
def rsa_pems():
    """(private PEM, public PEM) of an RSA 2048 key made for this test process."""
    return _pems(rsa.generate_private_key(public_exponent=65537, key_size=2048))


@functools.cache
def ec_pems(curve=ec.SECP256R1):
    """(private PEM, public PEM) of an EC key on curve, made for this test process."""
    return _pems(ec.generate_private_key(curve()))


def families():
    """HS256 with AUTH_KEY, RS256 and ES256 with key pairs of their own."""
    rsa_private, rsa_public = rsa_pems()
    ec_private, ec_public = ec_pems()
    return [
        Family("HS256", {"CHAT_AUTH_KEY": AUTH_KEY}, AUTH_KEY),
        Family("RS256", {"CHAT_AUTH_PUBLIC_KEY": rsa_public}, rsa_private, rsa_public),
        Family("ES256", {"CHAT_AUTH_PUBLIC_KEY": ec_public}, ec_private, ec_public),
    ]


def _b64(data):
    return base64.urlsafe_b64encode(data).rstrip(b"=").decode()


def hs256_by_hand(secret, claims, alg="HS256"):
    """A token signed with HMAC-SHA256 under `secret`, built by hand (PyJWT
    refuses to sign with a PEM key as an HMAC secret: the key-confusion attack)."""
    head = _b64(json.dumps({"alg": alg, "typ": "JWT"}).encode())
    body = _b64(json.dumps(claims).encode())
    signature = hmac.new(secret.encode(), f"{head}.{body}".encode(), hashlib.sha256).digest()
    return f"{head}.{body}.{_b64(signature)}"


def unsigned(claims):
    """A token with `alg: none` and no signature."""
    return jwt.encode(claims, None, algorithm="none")
