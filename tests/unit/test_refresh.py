import json
import re

import pytest


def archive(app, room):
    return [json.loads(raw) for _, raw in app.extensions["chat"].rooms.history(room)]


def message_items(html):
    return re.findall(r'<li class="message ([^"]*)"[^>]*>(.*?)</li>', html, re.S)


def test_join_posts_a_join_event_and_redirects_to_the_room(app, http):
    response = http.get("/refresh?user=%20ada%20&room=r1")
    assert response.status_code == 302
    assert response.headers["Location"] == "/refresh/room?user=ada&room=r1"
    assert [(e["type"], e["user"]) for e in archive(app, "r1")] == [("join", "ada")]


def test_room_page_renders_the_archive_oldest_first_with_own_name_as_you(app, http):
    http.get("/refresh?user=ada&room=r2")
    http.post("/refresh/room?user=bob&room=r2", data={"message": "hi ada"})
    http.post("/refresh/room?user=ada&room=r2", data={"message": "hi bob"})
    html = http.get("/refresh/room?user=ada&room=r2").get_data(as_text=True)
    items = message_items(html)
    assert len(items) == 3  # one element of class "message" per event
    assert "event-join mine" in items[0][0] and '<span class="user">you</span>' in items[0][1]
    assert '<span class="user">bob</span>' in items[1][1] and "hi ada" in items[1][1]
    assert "mine" in items[2][0] and "hi bob" in items[2][1]
    assert 'action="/refresh/room?user=ada&amp;room=r2"' in html
    assert 'refresh.js' in html and 'http-equiv="refresh" content="5"' in html


def test_post_trims_and_redirects_back_with_303(app, http):
    response = http.post("/refresh/room?user=ada&room=r3", data={"message": "  hello  "})
    assert response.status_code == 303
    assert response.headers["Location"] == "/refresh/room?user=ada&room=r3"
    assert archive(app, "r3")[-1]["text"] == "hello"


@pytest.mark.parametrize("message, status", [("", 400), ("   ", 400), ("x" * 2001, 413)])
def test_bad_messages_are_refused_with_a_page_and_nothing_posted(app, http, message, status):
    response = http.post("/refresh/room?user=ada&room=r4", data={"message": message})
    assert response.status_code == status and response.mimetype == "text/html"
    assert archive(app, "r4") == []


def test_longest_message_is_accepted(app, http):
    assert http.post("/refresh/room?user=ada&room=r5", data={"message": "é" * 2000}).status_code == 303


def test_leave_posts_a_leave_event_and_goes_home(app, http):
    response = http.get("/refresh/room/leave?user=ada&room=r6")
    assert response.status_code == 302 and response.headers["Location"] == "/"
    assert [(e["type"], e["user"]) for e in archive(app, "r6")] == [("leave", "ada")]


@pytest.mark.parametrize("query", ["user=ada&room=", "user=ada&room=UP", "room=r7", "user=&room=r7",
                                   "user=a%00b", "user=" + "x" * 33, "user=%FF"])
def test_bad_names_get_a_readable_400_page(app, http, query):
    for url in ("/refresh?", "/refresh/room?", "/refresh/room/leave?"):
        response = http.get(url + query)
        assert response.status_code == 400 and response.mimetype == "text/html", url
        assert "Error 400" in response.get_data(as_text=True)
    assert archive(app, "r7") == []


def test_markup_in_names_and_text_is_inert(app, http):
    evil = '<img src=x onerror=alert(1)><script>alert(2)</script>'
    http.post("/refresh/room?user=ada&room=r8", data={"message": evil})
    http.get("/refresh?user=%3Cb%3Ebob%3C%2Fb%3E&room=r8")
    html = http.get("/refresh/room?user=ada&room=r8").get_data(as_text=True)
    assert "<img src=x" not in html and "<script>alert" not in html and "<b>bob" not in html
    assert "&lt;img src=x onerror=alert(1)&gt;&lt;script&gt;alert(2)&lt;/script&gt;" in html


def test_a_refused_post_links_back_to_the_room(http):
    response = http.post("/refresh/room?user=ada&room=r9", data={"message": " "})
    assert response.status_code == 400
    assert 'href="/refresh/room?user=ada&amp;room=r9">Back to the room' in response.get_data(as_text=True)
