"""Log lines of a real gunicorn."""

import json

import requests

from tests.servers import wait_until


def test_json_logs_of_a_real_server(redis_server, start_server, room_name):
    server = start_server(redis_server.url, CHAT_LOG_FORMAT="json")
    secret = "a secret message text 1f7a"
    sock = server.join(room_name, "ada")
    sock.send(secret)
    sock.recv_until(lambda e: e["text"] == secret)
    sock.close()
    requests.get(f"{server.url}/refresh/room", params={"user": "bob", "room": room_name}, timeout=5)

    def lines():
        return [json.loads(line) for line in server.log().splitlines() if line.strip()]

    wait_until(lambda: any(r["message"] == "websocket closed" for r in lines()))
    records = lines()  # every line parses as JSON, gunicorn's own included
    assert any(r["logger"] == "gunicorn.error" and "Booting worker" in r["message"] for r in records)
    requests_logged = [r for r in records if r["message"] == "request"]
    last = requests_logged[-1]
    assert (last["method"], last["path"], last["status"]) == ("GET", "/refresh/room", 200)
    assert last["ms"] >= 0 and last["remote"] == "127.0.0.1"
    opened = [r for r in records if r["message"] == "websocket open"]
    closed = [r for r in records if r["message"] == "websocket closed"]
    assert opened[-1]["room"] == room_name and opened[-1]["user"] == "ada"
    assert closed[-1]["code"] == 1000 and closed[-1]["events"] >= 2 and closed[-1]["seconds"] >= 0
    assert secret not in server.log()  # no message text in the logs


def test_text_logs_warn_of_redis_errors(redis_server, start_server, room_name):
    server = start_server(redis_server.url, workers=1)
    sock = server.join(room_name, "ada")
    redis_server.stop()
    requests.post(f"{server.url}/longpolling/room/messages",
                  params={"user": "ada", "room": room_name}, data={"message": "hi"}, timeout=5)
    wait_until(lambda: "redis pub/sub connection lost" in server.log())
    log = server.log()
    assert "WARNING" in log and "redis unavailable" in log
    assert "gunicorn.access" not in log  # one line per request: the app's, not gunicorn's too
    sock.close()
