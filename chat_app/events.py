"""The event and the names in it: validation at the edge, and the JSON form.

An event is one JSON object, {"id", "type", "room", "user", "text", "ts",
"prev"}, in that order. The post script (room.py) writes the id, ts and prev
(the id of the room's event before it, 0 when the store knew none) around the
middle fields that `event_fields` encodes here, so every stored, published and
delivered event starts with `{"id":<digits>,`.
"""

import json
import re
import unicodedata
from urllib.parse import parse_qsl

from .exceptions import Invalid

DEFAULT_ROOM = "lobby"
NAME_MAX_CHARS = 32
QUERY_MAX_FIELDS = 16
TYPES = ("join", "leave", "message")

_ROOM = re.compile(r"[a-z0-9_-]{1,32}")
_DIGITS = re.compile(r"[0-9]+")


def parse_query(query_string):
    """The query string's parameters, decoded strictly as UTF-8, each given once.

    `query_string` is the WSGI QUERY_STRING (latin-1 characters standing for
    the raw bytes, as PEP 3333 says).
    """
    try:
        raw = query_string.encode("latin-1").decode("utf-8")
        pairs = parse_qsl(raw, keep_blank_values=True, errors="strict",
                          max_num_fields=QUERY_MAX_FIELDS)
    except (UnicodeError, ValueError):
        raise Invalid("the query string is not valid UTF-8 or has too many fields") from None
    params = {}
    for name, value in pairs:
        if name in params:
            raise Invalid(f"{name} is given more than once")
        params[name] = value
    return params


def parse_room(raw):
    """A room name: 1 to 32 of a-z 0-9 _ -; absent means the lobby."""
    if raw is None:
        return DEFAULT_ROOM
    if not _ROOM.fullmatch(raw):
        raise Invalid("room must be 1 to 32 characters from a-z, 0-9, _ and -")
    return raw


def parse_user(raw):
    """A user name, trimmed: 1 to 32 characters, none of them a control character."""
    if raw is None:
        raise Invalid("user is required")
    user = raw.strip()
    if not 1 <= len(user) <= NAME_MAX_CHARS:
        raise Invalid(f"user must be 1 to {NAME_MAX_CHARS} characters after trimming")
    if any(unicodedata.category(c) in ("Cc", "Cs") for c in user):
        raise Invalid("user must not contain control characters")
    return user


def parse_last_received(raw):
    """An event id the client already has: digits only; absent means 0."""
    if raw is None:
        return 0
    if not _DIGITS.fullmatch(raw):
        raise Invalid("lastReceived must be a non-negative decimal integer")
    return int(raw)


def parse_text(raw, max_chars):
    """A message's text, trimmed: not empty (400), at most max_chars (413)."""
    if not isinstance(raw, str):
        raise Invalid("message is required")
    text = raw.strip()
    if not text:
        raise Invalid("message is empty")
    if len(text) > max_chars:
        raise Invalid(f"message is longer than {max_chars} characters", status=413)
    try:
        text.encode("utf-8")
    except UnicodeEncodeError:
        raise Invalid("message is not valid Unicode") from None
    return text


def event_fields(kind, room, user, text=""):
    """The event's middle members as JSON text, without braces, id or ts."""
    assert kind in TYPES
    whole = json.dumps({"type": kind, "room": room, "user": user, "text": text},
                       ensure_ascii=False, separators=(",", ":"))
    return whole[1:-1]


def event_id(raw):
    """The id of an event in its JSON form (bytes), read from its fixed prefix."""
    return int(raw[6:raw.index(b",", 6)])


def read_query(environ, user_required=True):
    """(room, user, lastReceived) from a WSGI request's query string, each validated.

    user is None when it is optional and absent.
    """
    return query_names(parse_query(environ.get("QUERY_STRING", "")), user_required)


def query_names(params, user_required=True):
    """(room, user, lastReceived) of parsed query parameters, each validated.

    user is None when it is optional and absent. The other parameter a route
    of a room reads is `token` (token mode: access.py).
    """
    user = params.get("user")
    if user is not None or user_required:
        user = parse_user(user)
    return (parse_room(params.get("room")), user,
            parse_last_received(params.get("lastReceived")))
