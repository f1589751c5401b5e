"""Server-sent events against real gunicorn workers and a real redis-server."""

import signal
import time

import requests

from tests.servers import EventStream, wait_until


def test_page(shared_server):
    html = requests.get(f"{shared_server.url}/sse/room?user=ada&room=x", timeout=5).text
    assert "sse.js" in html and 'data-transport="sse"' in html


def test_archive_then_join_then_live_events_as_id_and_data_lines(shared_server, room_name):
    old = [shared_server.post(room_name, f"old{i}") for i in range(3)]
    events = shared_server.stream(room_name, "ada")
    assert events.headers["content-type"] == "text/event-stream; charset=utf-8"
    assert events.headers["cache-control"] == "no-store"
    assert events.history[:3] == old
    assert [e["type"] for e in events.history] == ["message"] * 3 + ["join"]
    new = shared_server.post(room_name, "new")
    assert events.recv() == new
    events.close()


def test_last_event_id_takes_precedence_over_last_received(shared_server, room_name):
    old = [shared_server.post(room_name, f"m{i}") for i in range(4)]
    events = shared_server.stream(room_name, "ada", headers={"Last-Event-ID": old[2]["id"]},
                    lastReceived=old[0]["id"])
    assert [e["text"] for e in events.history[:-1]] == ["m3"]
    events.close()


def test_a_stream_and_a_websocket_on_other_servers_see_each_other(
        redis_server, start_server, room_name):
    a, b = start_server(redis_server.url, workers=2), start_server(redis_server.url, workers=2)
    events = a.stream(room_name, "sse-user")
    sock = b.join(room_name, "ws-user")
    assert events.recv_until(lambda e: e["type"] == "join")[-1]["user"] == "ws-user"
    posted = requests.post(f"{a.url}/sse/room/messages",
                           params={"user": "sse-user", "room": room_name},
                           data={"message": "from sse"}, timeout=5)
    assert posted.status_code == 201
    sock.send("from ws")
    from_sse = sock.recv_until(lambda e: e["type"] == "message" and e["text"] == "from ws")
    from_ws = events.recv_until(lambda e: e["type"] == "message" and e["text"] == "from ws")
    assert [e["text"] for e in from_sse] == ["from sse", "from ws"]
    assert [e["text"] for e in from_ws] == ["from sse", "from ws"]
    assert from_sse == from_ws  # the same events, in the same order
    events.close()
    left = sock.recv_until(lambda e: e["type"] == "leave")[-1]
    assert left["user"] == "sse-user"  # the stream's end posts the leave
    sock.close()


def test_errors_before_the_stream_are_answered_as_json(shared_server):
    bad = EventStream(shared_server.port, "/sse/room/events?user=ada&room=Bad!")
    assert bad.status == 400 and "error" in bad.body
    assert bad.headers["content-type"] == "application/json"
    bad.close()


def test_while_redis_is_down_a_stream_is_refused_with_503(redis_server, start_server, room_name):
    server = start_server(redis_server.url)
    redis_server.stop()
    refused = EventStream(server.port, f"/sse/room/events?user=ada&room={room_name}")
    assert refused.status == 503 and "error" in refused.body
    refused.close()


def test_a_comment_keeps_the_stream_alive_every_ping_interval(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_PING_INTERVAL=0.3)
    events = server.stream(room_name, "ada")
    started = time.monotonic()
    for _ in range(3):
        assert events.record(timeout=2) == [":"]  # nothing else happens in the room
    assert time.monotonic() - started < 3 * 0.3 + 1
    events.close()


def test_a_stream_that_does_not_read_is_ended_and_resumes_with_last_event_id(
        redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_SEND_QUEUE=4, CHAT_RATE_BURST=1000,
                          CHAT_ARCHIVE_SIZE=500)
    events = server.stream(room_name, "slow", rcvbuf=4096)
    last_seen = events.history[-1]["id"]
    big = "x" * 1900
    posted = [server.post(room_name, f"{i} {big}") for i in range(150)]
    # it has stopped reading: cut off once its oldest waiting event waited the grace
    wait_until(lambda: "closing a slow client" in server.log(), timeout=10,
               message="the slow stream to be cut off")
    got = events.ended(timeout=10)  # whole records, then the end
    assert len(got) < len(posted)
    metrics = requests.get(f"{server.url}/metrics", timeout=5).text
    assert "chat_slow_clients_closed_total 1.0" in metrics
    resumed = server.stream(room_name, "slow",
                     headers={"Last-Event-ID": got[-1]["id"] if got else last_seen})
    messages = [e for e in got + resumed.history if e["type"] == "message"]
    assert messages == posted  # nothing missed, nothing twice
    resumed.close()


def test_presence_and_metrics_count_an_open_stream(shared_server, room_name):
    def present():
        return requests.get(f"{shared_server.url}/presence", params={"room": room_name},
                            timeout=5).json()["users"]

    def open_streams():
        metrics = requests.get(f"{shared_server.url}/metrics", timeout=5).text
        return 'chat_open_connections{transport="sse"} 1.0' in metrics

    events = shared_server.stream(room_name, "ada")
    assert present() == ["ada"]
    wait_until(open_streams, message="the stream to be counted")
    events.close()
    wait_until(lambda: present() == [], message="ada to be gone")


def test_sigterm_ends_the_streams(redis_server, start_server, room_name):
    server = start_server(redis_server.url)
    events = server.stream(room_name, "ada")
    server.process.send_signal(signal.SIGTERM)
    assert events.ended(timeout=5) == []
    wait_until(lambda: "sse closed" in server.log(), message="the session's log line")
