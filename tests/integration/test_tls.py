"""TLS on both sides: a Redis that speaks only TLS, and a gunicorn asked to."""

import pytest
import requests

from tests.servers import RedisServer, Server, self_signed_certificate


@pytest.fixture
def tls_redis(tmp_path):
    from tests.integration.conftest import require_redis_server

    require_redis_server()
    server = RedisServer(tmp_path / "redis-tls", tls=True).start()
    yield server
    server.stop()


def test_the_chat_runs_on_a_redis_that_speaks_only_tls(tls_redis, start_server, room_name):
    assert tls_redis.url.startswith("rediss://")
    server = start_server(tls_redis.url, workers=2)
    assert requests.get(server.url + "/healthz", timeout=5).json() == {"status": "ok"}
    sock = server.join(room_name, "ada")
    events = server.stream(room_name, "bob")
    posted = server.post(room_name, "over TLS to Redis")
    assert sock.recv_until(lambda e: e["type"] == "message")[-1] == posted
    assert events.recv_until(lambda e: e["type"] == "message")[-1] == posted
    assert server.archive(room_name)[-1] == posted
    sock.close()
    events.close()


def test_gunicorn_asked_to_serve_tls_refuses_to_start_and_says_why(tmp_path):
    cert, key = self_signed_certificate(tmp_path)
    server = Server(log_dir=tmp_path, GUNICORN_CMD_ARGS=f"--certfile={cert} --keyfile={key}")
    with pytest.raises(AssertionError, match="exited"):
        server.start()
    assert "end TLS at a proxy" in server.log()
