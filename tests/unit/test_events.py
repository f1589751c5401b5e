import json

import pytest

from chat_app.events import (
    Invalid,
    event_fields,
    event_id,
    parse_last_received,
    parse_query,
    parse_room,
    parse_text,
    parse_user,
    read_query,
)


@pytest.mark.parametrize("room", ["lobby", "a", "x" * 32, "a-b_c9"])
def test_valid_rooms(room):
    assert parse_room(room) == room


def test_absent_room_is_the_lobby():
    assert parse_room(None) == "lobby"


@pytest.mark.parametrize("room", ["", "x" * 33, "Lobby", "a b", "a/b", "é", "a:b"])
def test_invalid_rooms(room):
    with pytest.raises(Invalid) as info:
        parse_room(room)
    assert info.value.status == 400


@pytest.mark.parametrize("raw, user", [("ada", "ada"), ("  ada  ", "ada"), ("x" * 32, "x" * 32),
                                       ("Zoë 🙂", "Zoë 🙂"), (" " + "é" * 32 + "\t", "é" * 32)])
def test_valid_users_are_trimmed(raw, user):
    assert parse_user(raw) == user


@pytest.mark.parametrize("raw", [None, "", "   ", "x" * 33, "a\nb", "a\x00b", "a\x7fb", "a\x85b"])
def test_invalid_users(raw):
    with pytest.raises(Invalid) as info:
        parse_user(raw)
    assert info.value.status == 400


@pytest.mark.parametrize("raw, value", [(None, 0), ("0", 0), ("42", 42), ("007", 7),
                                        ("1795401287777511", 1795401287777511)])
def test_last_received(raw, value):
    assert parse_last_received(raw) == value


@pytest.mark.parametrize("raw", ["", "-1", "+1", "1.0", "1e3", " 1", "abc", "١٢"])
def test_invalid_last_received(raw):
    with pytest.raises(Invalid):
        parse_last_received(raw)


def test_text_is_trimmed_and_bounded():
    assert parse_text("  hi there \n", 10) == "hi there"
    assert parse_text("x" * 10, 10) == "x" * 10
    assert parse_text("🙂" * 10, 10) == "🙂" * 10  # code points, not bytes


def test_empty_text_is_400_and_long_text_413():
    for raw in ("", "   ", "\n\t", None):
        with pytest.raises(Invalid) as info:
            parse_text(raw, 10)
        assert info.value.status == 400
    with pytest.raises(Invalid) as info:
        parse_text("x" * 11, 10)
    assert info.value.status == 413


def test_lone_surrogates_are_refused():
    with pytest.raises(Invalid):
        parse_text("a\ud800b", 10)


def test_query_is_strict_utf8_with_each_name_once():
    assert parse_query("user=Zo%C3%AB&room=a") == {"user": "Zoë", "room": "a"}
    for bad in ("user=%FF", "user=a&user=b", "&".join(f"k{i}=v" for i in range(100))):
        with pytest.raises(Invalid):
            parse_query(bad)


def test_read_query():
    assert read_query({"QUERY_STRING": "user=+ada+"}) == ("lobby", "ada", 0)
    assert read_query({"QUERY_STRING": "room=x&lastReceived=5"}, user_required=False) == ("x", None, 5)
    with pytest.raises(Invalid):
        read_query({"QUERY_STRING": "room=x"})
    with pytest.raises(Invalid):
        read_query({"QUERY_STRING": "user=a&room="})


def test_event_fields_and_id():
    fields = event_fields("message", "lobby", "ada", 'say "<hi>" ✓')
    event = json.loads("{" + '"id":12,' + fields + ',"ts":3}')
    assert event == {"id": 12, "type": "message", "room": "lobby", "user": "ada",
                     "text": 'say "<hi>" ✓', "ts": 3}
    assert list(event) == ["id", "type", "room", "user", "text", "ts"]
    assert event_id(b'{"id":1795401287777511,"type":"join"}') == 1795401287777511
