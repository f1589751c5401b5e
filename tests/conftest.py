"""Fixtures every test directory shares. The app runs under gevent in
production, so the tests do too: the monkey patch comes first.

unit/ needs nothing but this; integration/conftest.py adds real redis-server
and gunicorn processes, browser/conftest.py headless Chromium (the only
conftest that imports Playwright).
"""

from gevent import monkey

monkey.patch_all()

import dataclasses  # noqa: E402
import itertools  # noqa: E402
import os  # noqa: E402

import fakeredis  # noqa: E402
import jwt  # noqa: E402
import pytest  # noqa: E402

from chat_app import create_app  # noqa: E402
from chat_app.config import Settings  # noqa: E402
from chat_app.control import Control  # noqa: E402
from chat_app.hub import Hub  # noqa: E402
from chat_app.room import Rooms  # noqa: E402
from chat_app.store import Nodes  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
_rooms = itertools.count()

# Token mode and the server API, as the tests configure them.
AUTH_KEY = "test-hs256-secret-" + "0123456789abcdef" * 3  # 66 bytes: HS512 takes it too
API_KEY = "test-api-key-0123456789"


def require(installed, program, tests, hint=""):
    """Integration and browser tests need real programs: without one they are
    skipped, except in CI, where they fail."""
    if not installed:
        if IN_CI:
            pytest.fail(f"{program} is not installed, and CI must run the {tests} tests")
        pytest.skip(f"{program} is not installed{hint}")


@pytest.fixture
def room_name():
    """A room no other test uses."""
    return f"r{os.getpid()}-{next(_rooms)}"


@pytest.fixture
def settings():
    return Settings(secret_key="test", rate_burst=1000, rate_per_sec=1000, longpoll_timeout=0.5)


@pytest.fixture
def fake_redis():
    return fakeredis.FakeRedis(server=fakeredis.FakeServer())


@pytest.fixture
def rooms(fake_redis, settings):
    return Rooms(fake_redis, settings)


@pytest.fixture
def hub(rooms, fake_redis, settings):
    hub = Hub(rooms, Nodes(fake_redis), settings, Control(fake_redis, settings))
    yield hub
    hub.stop()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def http(app):
    """Flask's test client on the embedded store."""
    return app.test_client()


def token(user="ada", key=AUTH_KEY, algorithm="HS256", **claims):
    """A token for user with claims (rooms, exp, nbf, ...), signed with AUTH_KEY
    unless key and algorithm say otherwise."""
    return jwt.encode({"sub": user, **claims}, key, algorithm=algorithm)


@pytest.fixture
def token_settings(settings):
    """The test settings in token mode (HS256, AUTH_KEY), with the server API (API_KEY)."""
    return dataclasses.replace(settings, auth_key=AUTH_KEY, api_key=API_KEY)


@pytest.fixture
def token_app(token_settings):
    return create_app(token_settings)


@pytest.fixture
def token_http(token_app):
    """Flask's test client of a token-mode app on the embedded store."""
    return token_app.test_client()
