"""The libraries' internals the server relies on, each checked so that an
incompatible upgrade fails here, loudly, rather than in production quietly.
pyproject.toml's version ranges name these tests."""

import inspect
import threading

import gevent

from chat_app.websocket import SERVER_OPTIONS, NoReaderThread


def test_simple_websocket_takes_our_thread_class_and_starts_no_thread(socket_pair):
    from simple_websocket import Server

    server_end, browser = socket_pair
    environ = {"gunicorn.socket": server_end, "HTTP_HOST": "chat.test",
               "HTTP_CONNECTION": "Upgrade", "HTTP_UPGRADE": "websocket",
               "HTTP_SEC_WEBSOCKET_VERSION": "13",
               "HTTP_SEC_WEBSOCKET_KEY": "dGhlIHNhbXBsZSBub25jZQ=="}
    threads = threading.active_count()
    ws = Server(environ, **SERVER_OPTIONS)
    assert isinstance(ws.thread, NoReaderThread)  # the Client reads the socket itself
    assert threading.active_count() == threads
    assert ws.sock is server_end  # the socket the Client takes over
    with gevent.Timeout(5):
        assert browser.recv(4096).startswith(b"HTTP/1.1 101 Switching Protocols")


def test_redis_py_connections_read_pushes_and_poll_without_blocking():
    from redis.connection import Connection

    read = inspect.signature(Connection.read_response).parameters
    assert {"disconnect_on_error", "push_request"} <= set(read)  # hub.read_batches
    assert "timeout" in inspect.signature(Connection.can_read).parameters


def test_gunicorn_still_lets_a_view_answer_on_the_socket_itself():
    from gunicorn.workers.base_async import ALREADY_HANDLED
    from gunicorn.workers.ggevent import GeventWorker

    # writer.AnsweredOnSocket returns it; the worker then writes nothing more
    assert GeventWorker.is_already_handled(None, ALREADY_HANDLED)
    assert not GeventWorker.is_already_handled(None, [])
