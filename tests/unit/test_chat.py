"""Chat.hand_over: a connection outlives its request and keeps its place in the pool."""

import gevent
from gevent.event import Event
from gevent.pool import Pool

from chat_app.chat import Chat


def chat_with(connections):
    return Chat(settings=None, rooms=None, hub=None, control=None, presence=None,
                connections=connections)


def test_a_handed_over_connection_takes_its_requests_place_in_the_pool():
    pool = Pool(1)
    chat = chat_with(pool)
    closed = Event()
    handed = []
    request = pool.spawn(lambda: handed.append(chat.hand_over(closed.wait)))
    request.join(timeout=5)
    assert request.dead
    [connection] = handed
    assert list(pool) == [connection]
    assert not pool.wait_available(timeout=0)  # still full: nothing else took the place
    closed.set()
    assert pool.join(timeout=5)
    assert pool.free_count() == 1


def test_a_request_waiting_for_the_pool_waits_on_after_a_hand_over():
    pool = Pool(1)
    chat = chat_with(pool)
    closed = Event()
    request = pool.spawn(chat.hand_over, closed.wait)
    waiting = gevent.spawn(pool.spawn, lambda: None)
    request.join(timeout=5)
    assert not waiting.ready()
    closed.set()
    assert waiting.get(timeout=5).join(timeout=5) is None
    assert pool.join(timeout=5)


def test_without_a_pool_the_connection_runs_in_a_greenlet_of_its_own():
    chat = chat_with(None)
    connection = chat.hand_over(lambda: "served")
    assert connection.get(timeout=5) == "served"
