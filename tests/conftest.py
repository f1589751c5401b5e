"""Shared fixtures. The app runs under gevent in production, so the tests do too."""

from gevent import monkey

monkey.patch_all()

import itertools  # noqa: E402
import os  # noqa: E402

import fakeredis  # noqa: E402
import pytest  # noqa: E402

from chat_app import create_app  # noqa: E402
from chat_app.config import Settings  # noqa: E402
from chat_app.hub import Hub  # noqa: E402
from chat_app.room import Rooms  # noqa: E402
from tests.browser import have_chromium, launch  # noqa: E402
from tests.servers import REDIS_SERVER, RedisServer, Server  # noqa: E402

IN_CI = os.environ.get("CI", "").lower() == "true"
_rooms = itertools.count()


def require_redis_server():
    """Integration tests need redis-server: skipped without it, except in CI."""
    if REDIS_SERVER is None:
        if IN_CI:
            pytest.fail("redis-server is not installed, and CI must run the integration tests")
        pytest.skip("redis-server is not installed")


def require_chromium():
    """Browser tests need Debian's chromium: skipped without it, except in CI."""
    if not have_chromium():
        if IN_CI:
            pytest.fail("chromium is not installed, and CI must run the browser tests")
        pytest.skip("chromium is not installed (apt-get install chromium)")


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
    hub = Hub(rooms, fake_redis, settings)
    yield hub
    hub.stop()


@pytest.fixture
def app(settings):
    return create_app(settings)


@pytest.fixture
def http(app):
    """Flask's test client on the embedded store."""
    return app.test_client()


@pytest.fixture
def redis_server(tmp_path):
    require_redis_server()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def start_server(tmp_path):
    """start_server(redis_url, workers=1, **env): a running gunicorn, stopped after the test."""
    started = []

    def start(redis_url=None, workers=1, port=None, **env):
        server = Server(redis_url, workers=workers, port=port, log_dir=tmp_path, **env).start()
        started.append(server)
        return server

    yield start
    for server in started:
        server.stop()


@pytest.fixture(scope="module")
def shared_redis(tmp_path_factory):
    """One redis-server for a whole test module (tests use rooms of their own)."""
    require_redis_server()
    server = RedisServer(tmp_path_factory.mktemp("redis")).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def shared_server(shared_redis, tmp_path_factory):
    """One gunicorn (2 workers) on shared_redis for a whole test module."""
    server = Server(shared_redis.url, workers=2, log_dir=tmp_path_factory.mktemp("logs"),
                    CHAT_PING_INTERVAL=5).start()
    yield server
    server.stop()


@pytest.fixture(scope="module")
def browser():
    """One headless Chromium for a whole test module (each person gets a fresh context)."""
    require_chromium()
    from playwright.sync_api import sync_playwright

    with sync_playwright() as playwright:
        chromium = launch(playwright)
        yield chromium
        chromium.close()
