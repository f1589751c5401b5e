import json
import logging

from chat_app.logs import JsonFormatter, TextFormatter


def record(message, **fields):
    rec = logging.LogRecord("chat_app.test", logging.WARNING, __file__, 1, message, (), None)
    rec.fields = fields
    return rec


def test_text_lines_carry_the_fields_as_key_value():
    line = TextFormatter().format(record("websocket closed", room="lobby", code=1000))
    assert " WARNING " in line and "chat_app.test: websocket closed" in line
    assert line.endswith("room=lobby code=1000")


def test_json_lines_are_one_object_each():
    line = JsonFormatter().format(record("websocket closed", room="lobby", user='a "b"\n', code=1000))
    data = json.loads(line)
    assert "\n" not in line
    assert data["message"] == "websocket closed" and data["level"] == "WARNING"
    assert data["room"] == "lobby" and data["user"] == 'a "b"\n' and data["code"] == 1000
