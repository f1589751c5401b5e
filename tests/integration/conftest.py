"""Real processes on free ports of their own: redis-server and gunicorn
(tests/servers.py). Without redis-server these tests skip, except in CI."""

import pytest

from tests.conftest import require
from tests.proxy import RedisProxy
from tests.servers import REDIS_SERVER, RedisServer, Server


def require_redis_server():
    require(REDIS_SERVER is not None, "redis-server", "integration")


@pytest.fixture
def redis_server(tmp_path):
    require_redis_server()
    server = RedisServer(tmp_path / "redis").start()
    yield server
    server.stop()


@pytest.fixture
def redis_proxy(redis_server):
    """A RedisProxy in front of redis_server (tests/proxy.py): a server started
    on its url reaches Redis through it."""
    proxy = RedisProxy(redis_server.port).start()
    yield proxy
    proxy.stop()


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
