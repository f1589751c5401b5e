"""The protocol fuzzer's seed corpus: one valid request of every route in docs/protocol.md."""

HTTP_ROOM = "fuzzed"    # the room of the mutated HTTP requests
WS_ROOM = "fuzzws"      # the room of the mutated WebSocket frames
KEY = "dGhlIHNhbXBsZSBub25jZQ=="


def request(port, method, target, headers=(), body=b""):
    """An HTTP/1.1 request's bytes, closing the connection after the answer."""
    lines = [f"{method} {target} HTTP/1.1", f"Host: 127.0.0.1:{port}", "Connection: close",
             *headers]
    if body or method == "POST":
        lines.append(f"Content-Length: {len(body)}")
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + body


def handshake(port, room, user="fz"):
    """A valid WebSocket handshake into room."""
    return request(port, "GET", f"/websocket/room/socket?user={user}&room={room}&lastReceived=0",
                   ["Upgrade: websocket", "Connection: Upgrade", f"Sec-WebSocket-Key: {KEY}",
                    "Sec-WebSocket-Version: 13"])


def http_seeds(port, api_key):
    """Valid requests of every route, all in HTTP_ROOM."""
    q = f"user=fz&room={HTTP_ROOM}"
    form = ["Content-Type: application/x-www-form-urlencoded"]
    json_type = ["Content-Type: application/json"]
    api = [f"Authorization: Bearer {api_key}", *json_type]
    get = [f"/{page}" for page in ("", "healthz", "metrics", f"presence?room={HTTP_ROOM}")]
    get += [f"/{t}?{q}" for t in ("refresh", "longpolling")]
    get += [f"/{t}/room?{q}" for t in ("refresh", "longpolling", "websocket", "sse")]
    get += [f"/{t}/room/leave?{q}" for t in ("refresh", "longpolling")]
    get += [f"/longpolling/room/messages?{q}&lastReceived=0", f"/sse/room/events?{q}",
            "/static/chat.css"]
    seeds = [request(port, "GET", target) for target in get]
    seeds += [
        request(port, "POST", f"/refresh/room?{q}", form, b"message=hello"),
        request(port, "POST", f"/longpolling/room/messages?{q}", form, b"message=hello"),
        request(port, "POST", f"/longpolling/room/messages?{q}", json_type, b'{"message": "hi"}'),
        request(port, "POST", f"/sse/room/messages?{q}", json_type, b'{"message": "hi"}'),
        request(port, "GET", f"/sse/room/events?{q}", ["Last-Event-ID: 5"]),
        request(port, "POST", f"/api/rooms/{HTTP_ROOM}/messages", api,
                b'{"user": "bot", "text": "notice"}'),
        request(port, "POST", f"/api/rooms/{HTTP_ROOM}/disconnect", api, b'{"user": "fz"}'),
        request(port, "GET", f"/api/rooms/{HTTP_ROOM}/presence", api),
        handshake(port, HTTP_ROOM),
    ]
    return seeds
