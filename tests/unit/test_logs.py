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


TOKEN = ("eyJhbGciOiJIUzI1NiIsInR5cCI6IkpXVCJ9.eyJzdWIiOiJhZGEifQ."
         "5mhBHqs5_DTLdINd9p5m7ZJ6XD0Xc55kIaCRY5r6HRA")


def test_tokens_and_keys_are_redacted_from_every_line():
    gunicorn_error = record(f"Error handling request /sse/room/events?room=a&token={TOKEN}&x=1")
    header = record("rejected", header="Authorization: Bearer api-key-0123456789")
    anywhere = record(f"something said {TOKEN}")
    for formatter in (TextFormatter(), JsonFormatter()):
        lines = [formatter.format(r) for r in (gunicorn_error, header, anywhere)]
        assert not any(TOKEN in line or "api-key-0123456789" in line for line in lines)
        assert "token=[redacted]&x=1" in lines[0] and "Bearer [redacted]" in lines[1]
    json.loads(JsonFormatter().format(header))  # still one JSON object
