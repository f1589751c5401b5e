"""A coverage-guided fuzzer (atheris) of the input parsers and the JSON posting routes.

    python -m fuzz.parsers [libFuzzer options]    # default: -max_total_time=60
                                                  # e.g. -runs=200000

Each input picks one target by its first byte and feeds it the rest. What must
hold: a parser returns or raises the project's own exceptions (Invalid,
AuthRefused), nothing else; a route never answers 500, and a refused post
leaves the room's archive unchanged. A failure is reported by atheris (the
input is saved as /tmp/chat-fuzz-crash-*); the counts are printed at the end.
"""

import collections
import ctypes
import json
import sys
from urllib.parse import quote

import atheris

with atheris.instrument_imports():
    import jwt

    from chat_app import create_app
    from chat_app.auth import Verifier, bearer, request_token
    from chat_app.config import Settings
    from chat_app.events import (event_fields, parse_last_received, parse_query, parse_room,
                                 parse_text, parse_user, read_query)
    from chat_app.exceptions import AuthRefused, Invalid

DEFAULT_OPTIONS = ["-max_total_time=60"]
ARTIFACTS = "-artifact_prefix=/tmp/chat-fuzz-"  # where a failing input is saved
AUTH_KEY = "k" * 32
API_KEY = "fuzz-api-key-0123456789"
ROOM = "fuzzroom"
OWN_ERRORS = (Invalid, AuthRefused)
MAX_CHARS = 50

counts = collections.Counter()  # inputs per target, and answers per status


def refused(call, *args):
    """Calls a parser; its own refusals count, anything else propagates to atheris."""
    try:
        return call(*args)
    except OWN_ERRORS:
        counts["refused"] += 1
        return None


def fuzz_names(fdp):
    """parse_query, then the names in it, as a route of a room reads them."""
    query = fdp.ConsumeUnicodeNoSurrogates(200)
    if fdp.ConsumeBool():  # as WSGI gives it: each UTF-8 byte a latin-1 character
        query = query.encode("utf-8").decode("latin-1")
    refused(read_query, {"QUERY_STRING": query}, fdp.ConsumeBool())
    params = refused(parse_query, query) or {}
    for name, value in params.items():
        refused(parse_room, value)
        refused(parse_user, value)
        refused(parse_last_received, value)
        refused(parse_text, value, MAX_CHARS)


def fuzz_fields(fdp):
    """The single parsers on any text, and event_fields on what they accept."""
    raw = fdp.ConsumeUnicode(80)
    room = refused(parse_room, raw)
    user = refused(parse_user, raw)
    text = refused(parse_text, raw, MAX_CHARS)
    refused(parse_last_received, raw)
    if room and user and text:
        event_fields("message", room, user, text)


def fuzz_token(fdp):
    """The token's way in: the header, the parameter, and its decoding."""
    header = fdp.ConsumeUnicode(120)
    parameter = fdp.ConsumeUnicode(120) if fdp.ConsumeBool() else None
    bearer(header)
    token = refused(request_token, header, parameter)
    if token is not None:
        refused(VERIFIER.decode, token)
    claims = fuzz_claims(fdp)
    refused(VERIFIER.decode, jwt.encode(claims, AUTH_KEY, algorithm="HS256"))


def fuzz_claims(fdp):
    """Claims of a validly signed token: sub, rooms, exp and nbf of any JSON type."""
    claims = {}
    for name in ("sub", "rooms", "exp", "nbf", "aud"):
        if fdp.ConsumeBool():
            claims[name] = json_value(fdp)
    return claims


def json_value(fdp, depth=0):
    """Any JSON value, the fuzzer choosing its type."""
    kind = fdp.ConsumeIntInRange(0, 6 if depth < 2 else 4)
    if kind == 0:
        return None
    if kind == 1:
        return fdp.ConsumeBool()
    if kind == 2:
        return fdp.ConsumeInt(8)
    if kind == 3:
        return fdp.ConsumeRegularFloat()
    if kind == 4:
        return fdp.ConsumeUnicode(40)
    if kind == 5:
        return [json_value(fdp, depth + 1) for _ in range(fdp.ConsumeIntInRange(0, 3))]
    return {fdp.ConsumeUnicode(8): json_value(fdp, depth + 1)
            for _ in range(fdp.ConsumeIntInRange(0, 3))}


def fuzz_longpolling_post(fdp):
    """POST /longpolling/room/messages with any body and content type."""
    content_type = fdp.PickValueInList(["application/json", "application/json; charset=latin-1",
                                        "application/x-www-form-urlencoded", "text/plain"])
    query = f"user={quote(fdp.ConsumeBytes(12))}&room={ROOM}"
    check_post(f"/longpolling/room/messages?{query}", body(fdp, "message"), content_type)


def fuzz_api_post(fdp):
    """POST /api/rooms/<room>/messages with any body, with the API key."""
    content_type = fdp.PickValueInList(["application/json", "text/plain", ""])
    check_post(f"/api/rooms/{ROOM}/messages", body(fdp, "user", "text"), content_type,
               {"Authorization": f"Bearer {API_KEY}"})


def body(fdp, *names):
    """A request body: raw bytes, or a JSON object with the route's members of any type."""
    if fdp.ConsumeBool():
        return fdp.ConsumeBytes(300)
    members = {name: json_value(fdp) for name in names if fdp.ConsumeIntInRange(0, 3)}
    return json.dumps(members, ensure_ascii=fdp.ConsumeBool()).encode("utf-8", "surrogatepass")


def check_post(path, body, content_type, headers=None):
    """Posts through the test client: never 500, and only a 201 adds to the archive."""
    before = ROOMS.history(ROOM)
    response = CLIENT.post(path, data=body, content_type=content_type, headers=headers)
    counts[f"status {response.status_code}"] += 1
    if response.status_code >= 500:
        raise AssertionError(f"{path} answered {response.status_code}: {response.data[:200]!r}")
    if response.status_code != 201 and ROOMS.history(ROOM) != before:
        raise AssertionError(f"{path} refused ({response.status_code}) but posted")


TARGETS = [fuzz_names, fuzz_fields, fuzz_token, fuzz_longpolling_post, fuzz_api_post]


def test_one_input(data):
    """atheris's entry point: the first byte picks the target."""
    fdp = atheris.FuzzedDataProvider(data)
    target = TARGETS[fdp.ConsumeIntInRange(0, len(TARGETS) - 1)]
    counts["inputs"] += 1
    counts[target.__name__] += 1
    target(fdp)


def report():
    """The counts, on stderr, when the run ends (also after a failure)."""
    print("fuzz.parsers:", ", ".join(f"{k}={v}" for k, v in sorted(counts.items())),
          file=sys.stderr)


def at_exit(function):
    """Runs function when libFuzzer ends the process: it calls C's exit(), so
    Python's atexit never runs; glibc's on_exit does."""
    callback = ctypes.CFUNCTYPE(None, ctypes.c_int, ctypes.c_void_p)(
        lambda status, arg: function())
    at_exit.callbacks.append(callback)  # kept alive until the end
    ctypes.CDLL("libc.so.6").on_exit(callback, None)


at_exit.callbacks = []


def build_app():
    """The app on the embedded store: token mode, the server API, no rate limit to speak of."""
    settings = Settings(rate_burst=10 ** 9, rate_per_sec=10.0 ** 6, max_message_chars=MAX_CHARS,
                        api_key=API_KEY, secret_key="fuzz", archive_size=10 ** 6)
    return create_app(settings)


APP = build_app()
CLIENT = APP.test_client()
ROOMS = APP.extensions["chat"].rooms
VERIFIER = Verifier(AUTH_KEY, "HS256")


def main(argv):
    options = argv[1:] or DEFAULT_OPTIONS
    at_exit(report)
    atheris.Setup([argv[0], ARTIFACTS, *options], test_one_input)
    atheris.Fuzz()


if __name__ == "__main__":
    main(sys.argv)
