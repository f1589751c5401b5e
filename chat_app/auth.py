"""Token mode: the signed JWTs with which the application in front of the chat
vouches for its users.

A token is verified by PyJWT with the one configured key, and only with that
key's algorithm: HS256 for the secret CHAT_AUTH_KEY, RS256 for an RSA public
key, ES256 for a P-256 one. Every other `alg` is refused: `none`, an HS256
token against a public key (signed with the key's PEM text as a secret),
another family. The claims:

    sub    the user (a user name's rules; required)
    rooms  the rooms the token may enter: a list of room names (absent: every room)
    exp    when it expires; nbf: when it starts to be valid (enforced when present)

Pure: `Verifier.decode` and `Identity.admit` return or raise AuthRefused
(401 for no valid token, 403 for a room or user the token does not allow).
"""

import time
from dataclasses import dataclass

import jwt

from .events import parse_user
from .exceptions import AuthRefused, Invalid
from .keys import load_public_key

TOKEN_EXPIRED = "token expired"  # the close reason of a WebSocket whose token expired


@dataclass(frozen=True)
class Identity:
    """Who a valid token speaks for: its user, the rooms it may enter (None:
    every room), and when it expires (Unix seconds; None: never)."""

    user: str
    rooms: frozenset | None = None
    expires: float | None = None

    def admit(self, room, user=None):
        """The user, if this identity may enter room (and, when a user name is
        given, is that user); else AuthRefused (403)."""
        if self.rooms is not None and room not in self.rooms:
            raise AuthRefused(f"this token does not allow the room {room}", status=403)
        if user is not None and user != self.user:
            raise AuthRefused("user is not the token's user", status=403)
        return self.user


class Verifier:
    """Decodes tokens signed with one key, by its one algorithm."""

    def __init__(self, key, algorithm):
        self._key = key
        self._algorithm = algorithm

    @classmethod
    def from_settings(cls, settings):
        """The verifier of token mode; None in open mode (neither key set)."""
        if settings.auth_key:
            return cls(settings.auth_key, "HS256")
        if settings.auth_public_key:
            return cls(*load_public_key(settings.auth_public_key))
        return None

    def decode(self, token):
        """The Identity a token vouches for; AuthRefused (401) if it vouches for nobody."""
        if not token:
            raise AuthRefused("a token is required: Authorization: Bearer <token>, "
                              "or the token parameter")
        try:
            claims = jwt.decode(token, self._key, algorithms=[self._algorithm],
                                options={"require": ["sub"], "verify_iat": False})
        except jwt.ExpiredSignatureError:
            raise AuthRefused("the token has expired") from None
        except jwt.ImmatureSignatureError:
            raise AuthRefused("the token is not valid yet") from None
        except (jwt.InvalidTokenError, UnicodeEncodeError):  # a lone surrogate is no token
            raise AuthRefused("the token is malformed, or not signed with this server's key") \
                from None
        return identity(claims)


def identity(claims):
    """The Identity of a verified token's claims; AuthRefused (401) if they are malformed."""
    try:
        user = parse_user(claims["sub"])
    except Invalid as exc:
        raise AuthRefused(f"the token's sub is not a valid user: {exc.message}") from None
    rooms = claims.get("rooms")
    if rooms is not None:
        if not isinstance(rooms, list) or not all(isinstance(room, str) for room in rooms):
            raise AuthRefused("the token's rooms must be a list of room names")
        rooms = frozenset(rooms)
    expires = claims.get("exp")
    return Identity(user, rooms, None if expires is None else float(expires))


def bearer(authorization):
    """The credentials of an `Authorization: Bearer <credentials>` header; None
    without a header or with another scheme."""
    scheme, _, credentials = (authorization or "").strip().partition(" ")
    if scheme.lower() != "bearer":
        return None
    return credentials.strip() or None


def request_token(authorization, parameter):
    """The token a request carries: in its Authorization header or its token
    parameter (None if neither). Both at once is refused (401): which would count?"""
    header = bearer(authorization)
    if header is not None and parameter is not None:
        raise AuthRefused("give the token once: in the Authorization header or the token parameter")
    return header if header is not None else parameter


def issue(secret, user, rooms=None, ttl=None, now=None):
    """An HS256 token for user (`rooms`: the rooms it may enter; `ttl`: seconds it lasts)."""
    now = time.time() if now is None else now
    claims = {"sub": user, "iat": int(now)}
    if rooms is not None:
        claims["rooms"] = list(rooms)
    if ttl is not None:
        claims["exp"] = int(now + ttl)
    return jwt.encode(claims, secret, algorithm="HS256")
