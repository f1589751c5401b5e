import os
import re
import signal

import gevent
import requests
import websocket

from tests.conftest import API_KEY
from tests.servers import free_port, wait_until

DELIVERED = 'chat_frames_delivered_total{transport="websocket"}'


def scrape(server):
    response = requests.get(f"{server.url}/metrics", timeout=5)
    assert response.status_code == 200
    assert response.headers["Content-Type"].startswith("text/plain")
    return response.text


def value(text, series):
    """The value of one series (name and labels, as exposed), or 0 when absent."""
    match = re.search(rf"^{re.escape(series)} (\S+)$", text, re.M)
    return float(match.group(1)) if match else 0.0


def test_metrics_answer_without_redis(start_server):
    server = start_server(f"redis://127.0.0.1:{free_port()}/0")
    text = scrape(server)
    for series in ('chat_open_connections{transport="websocket"}',
                   'chat_events_posted_total{type="message"}', 'chat_frames_delivered_total{transport="websocket"}',
                   "chat_slow_clients_closed_total", 'chat_posts_refused_total{reason="rate"}',
                   "chat_post_seconds_count"):
        assert re.search(rf"^{re.escape(series)} 0\.0$", text, re.M), series
    # each worker's hub tries to subscribe from the start, and counts its failures
    failures = re.search(r"^chat_redis_errors_total (\d+)\.0$", text, re.M)
    assert failures and int(failures.group(1)) >= 1


def test_counters_add_up_across_workers(redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2, CHAT_RATE_BURST=30, CHAT_RATE_PER_SEC=0.01)
    socks = [server.join(room_name, f"ws{i}") for i in range(4)]
    for i in range(30):  # new connections each time: both workers post
        requests.post(f"{server.url}/longpolling/room/messages",
                      params={"user": "poster", "room": room_name}, data={"message": f"m{i}"},
                      headers={"Connection": "close"}, timeout=5)
    refused = requests.post(f"{server.url}/longpolling/room/messages",
                            params={"user": "poster", "room": room_name}, data={"message": "x"})
    assert refused.status_code == 429
    assert requests.post(f"{server.url}/longpolling/room/messages",
                         params={"user": "poster", "room": room_name},
                         data={"message": " "}).status_code == 400
    try:
        websocket.create_connection(server.ws_url(user="x", room=room_name), timeout=5,
                                    origin="http://evil.example")
    except websocket.WebSocketBadStatusException as exc:
        assert exc.status_code == 403
    for sock in socks:
        sock.recv_until(lambda e: e["text"] == "m29")
    texts = [scrape(server) for _ in range(6)]  # whichever worker answers, the same sums
    for text in texts:
        assert value(text, 'chat_events_posted_total{type="message"}') == 30
        assert value(text, 'chat_events_posted_total{type="join"}') == 4
        assert value(text, 'chat_open_connections{transport="websocket"}') == 4
        assert value(text, 'chat_posts_refused_total{reason="rate"}') == 1
        assert value(text, 'chat_posts_refused_total{reason="validation"}') == 1
        assert value(text, 'chat_posts_refused_total{reason="origin"}') == 1
        assert value(text, "chat_post_seconds_count") == 35  # the refused post reached Redis too
        assert value(text, 'chat_frames_delivered_total{transport="websocket"}') >= 4 * 30
    for sock in socks:
        sock.close()
    wait_until(lambda: value(scrape(server), 'chat_open_connections{transport="websocket"}') == 0)
    assert value(scrape(server), 'chat_events_posted_total{type="leave"}') == 4


def test_counters_survive_a_worker_restart_and_its_gauges_go(redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=2)
    socks = [server.join(room_name, f"u{i}") for i in range(6)]
    ports = {sock.ws.sock.getsockname()[1] for sock in socks}
    held = {pid: server.connections(pid, ports) for pid in server.worker_pids()}
    victim = max(held, key=held.get)
    before = scrape(server)
    assert value(before, 'chat_events_posted_total{type="join"}') == 6
    os.kill(victim, signal.SIGKILL)
    wait_until(lambda: victim not in server.worker_pids() and len(server.worker_pids()) == 2)
    after = scrape(server)
    assert value(after, 'chat_events_posted_total{type="join"}') == 6  # the dead worker's count stays
    assert value(after, 'chat_open_connections{transport="websocket"}') == 6 - held[victim]
    for sock in socks:
        sock.close()


def test_long_polls_are_open_connections(start_server, redis_server, room_name):
    server = start_server(redis_server.url, CHAT_LONGPOLL_TIMEOUT=5)
    last = server.post(room_name, "x")["id"]
    polls = [gevent.spawn(requests.get, f"{server.url}/longpolling/room/messages",
                          params={"room": room_name, "lastReceived": last}, timeout=10)
             for _ in range(3)]
    wait_until(lambda: value(scrape(server), 'chat_open_connections{transport="longpolling"}') == 3)
    server.post(room_name, "y")
    assert all(p.get(timeout=5).status_code == 200 for p in polls)
    text = scrape(server)
    assert value(text, 'chat_frames_delivered_total{transport="longpolling"}') == 3
    assert value(text, 'chat_open_connections{transport="longpolling"}') == 0


def test_frames_delivered_count_what_clients_receive_not_a_socket_being_closed(
        redis_server, start_server, room_name):
    """While the server waits for a disconnected user's answer to its close
    (CLOSE_GRACE), events go to everyone else: /metrics counts exactly those."""
    server = start_server(redis_server.url, workers=2, CHAT_API_KEY=API_KEY)
    closing = server.join(room_name, "ada")
    others = [server.join(room_name, f"u{i}") for i in range(3)]
    for sock in [closing, *others[:-1]]:  # every join seen, so every one counted
        sock.recv_until(lambda e: e["user"] == "u2")
    before = value(scrape(server), DELIVERED)
    response = requests.post(f"{server.url}/api/rooms/{room_name}/disconnect", json={"user": "ada"},
                             headers={"Authorization": f"Bearer {API_KEY}"}, timeout=5)
    assert response.json() == {"disconnected": 1}  # ada reads no more: its close goes unanswered
    posted = [server.post(room_name, f"m{i}") for i in range(5)]
    received = [sock.recv_until(lambda e: e["id"] == posted[-1]["id"]) for sock in others]
    delta = value(scrape(server), DELIVERED) - before
    assert "leave" not in [e["type"] for e in server.archive(room_name)]  # still in the grace
    assert received == [posted] * 3
    assert delta == sum(map(len, received)) == 15
    code, events = closing.recv_close()
    assert code == 1008 and events == []  # nothing was written after the close frame
    for sock in others:
        assert sock.recv(timeout=10)["type"] == "leave"
        sock.close()
