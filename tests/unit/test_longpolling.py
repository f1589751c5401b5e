import gevent
import pytest

from chat_app import create_app
from chat_app.config import Settings


def post(http, room, text, user="ada"):
    response = http.post(f"/longpolling/room/messages?user={user}&room={room}", data={"message": text})
    assert response.status_code == 201, response.get_data(as_text=True)
    return response.json


def test_join_and_leave_redirect_and_post_events(app, http):
    response = http.get("/longpolling?user=ada&room=l1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/longpolling/room?user=ada&room=l1"
    response = http.get("/longpolling/room/leave?user=ada&room=l1")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    events = http.get("/longpolling/room/messages?room=l1").json
    assert [(e["type"], e["user"]) for e in events] == [("join", "ada"), ("leave", "ada")]


def test_the_page_loads_its_script(http):
    html = http.get("/longpolling/room?user=ada&room=l2").get_data(as_text=True)
    assert "longpolling.js" in html and 'data-user="ada"' in html and 'data-room="l2"' in html


def test_post_answers_201_with_the_event(http):
    event = post(http, "l3", "  hi  ")
    assert event["type"] == "message" and event["text"] == "hi" and event["user"] == "ada"
    assert set(event) == {"id", "type", "room", "user", "text", "ts", "prev"}


def test_post_accepts_a_json_body(http):
    response = http.post("/longpolling/room/messages?user=ada&room=l4", json={"message": "json"})
    assert response.status_code == 201 and response.json["text"] == "json"


def test_messages_after_last_received(http):
    ids = [post(http, "l5", str(i))["id"] for i in range(4)]
    assert [e["id"] for e in http.get("/longpolling/room/messages?room=l5").json] == ids
    got = http.get(f"/longpolling/room/messages?room=l5&lastReceived={ids[1]}&user=bob").json
    assert [e["text"] for e in got] == ["2", "3"]


def test_a_poll_waits_for_the_next_event():
    app = create_app(Settings(secret_key="t", longpoll_timeout=5))
    http = app.test_client()
    last = post(http, "l6", "seen")["id"]
    waiting = gevent.spawn(http.get, f"/longpolling/room/messages?room=l6&lastReceived={last}")
    gevent.sleep(0.1)
    assert not waiting.ready()
    new = post(app.test_client(), "l6", "new")
    assert waiting.get(timeout=5).json == [new]


def test_a_poll_with_nothing_new_answers_an_empty_array_after_the_timeout():
    app = create_app(Settings(secret_key="t", longpoll_timeout=0.2))
    http = app.test_client()
    last = post(http, "l7", "seen")["id"]
    response = http.get(f"/longpolling/room/messages?room=l7&lastReceived={last}")
    assert response.status_code == 200 and response.json == []


@pytest.mark.parametrize("body, status", [({"message": ""}, 400), ({"message": " \n "}, 400),
                                          ({"message": "x" * 2001}, 413), ({}, 400)])
def test_bad_messages_are_json_errors_and_post_nothing(http, body, status):
    for send in (lambda: http.post("/longpolling/room/messages?user=ada&room=l8", data=body),
                 lambda: http.post("/longpolling/room/messages?user=ada&room=l8", json=body)):
        response = send()
        assert response.status_code == status
        assert response.mimetype == "application/json" and response.json["error"]
    assert http.get("/longpolling/room/messages?room=l8").json == []


@pytest.mark.parametrize("data", ['{"message": ', "[1, 2]", '"text"', "\xff", '{"message": 5}'])
def test_malformed_json_is_400(http, data):
    response = http.post("/longpolling/room/messages?user=ada&room=l9", data=data,
                         content_type="application/json")
    assert response.status_code == 400 and "error" in response.json


def test_a_huge_body_is_413(http):
    response = http.post("/longpolling/room/messages?user=ada&room=l9",
                         data={"message": "x" * 200_000})
    assert response.status_code == 413 and "error" in response.json


@pytest.mark.parametrize("query", ["room=", "room=A", "lastReceived=-1", "lastReceived=x",
                                   "lastReceived=1.5", "user=%01", "room=a&room=b"])
def test_bad_query_is_a_json_400(http, query):
    response = http.get(f"/longpolling/room/messages?{query}")
    assert response.status_code == 400 and response.mimetype == "application/json"
    assert response.json["error"]


def test_posting_needs_a_valid_user(http):
    for query in ("room=l10", "user=&room=l10", "user=" + "x" * 33 + "&room=l10"):
        response = http.post(f"/longpolling/room/messages?{query}", data={"message": "hi"})
        assert response.status_code == 400 and "error" in response.json
    assert http.get("/longpolling/room/messages?room=l10").json == []


def test_rate_limit_is_429_and_posts_nothing():
    app = create_app(Settings(secret_key="t", rate_burst=2, rate_per_sec=0.01))
    http = app.test_client()
    post(http, "l11", "1")
    post(http, "l11", "2")
    response = http.post("/longpolling/room/messages?user=ada&room=l11", data={"message": "3"})
    assert response.status_code == 429 and "error" in response.json
    assert [e["text"] for e in http.get("/longpolling/room/messages?room=l11").json] == ["1", "2"]
