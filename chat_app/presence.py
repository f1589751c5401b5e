"""Who is in a room, across every process: GET /presence, and its Redis side.

A room's presence is a sorted set `P R:presence` of "<user>\\n<holder>"
members scored by when they were last seen (Redis time, ms). A holder is one
process's WebSockets ("ws:<host>:<pid>:<nonce>") or "http" for long polls and
refresh pages. A user is present while any of their members is younger than
CHAT_PRESENCE_TTL, so a user with two tabs is listed once and stays while one
tab does, and a process that dies takes its users with it within the TTL.

Each process keeps its members fresh in batches: one script call a second
for the long polls and page loads it saw, plus its WebSocket users every
TTL/3, whatever the number of rooms and users.
"""

import logging
import os
import socket
import uuid
from collections import Counter

import gevent
import redis
from flask import Blueprint, current_app, jsonify, request

from .config import PRESENCE_FLUSH_INTERVAL
from .events import read_query
from .room import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("presence", __name__)

# Marks members seen now. KEYS: presence sets; ARGV: per key, a count then members.
TOUCH_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
local i = 1
for _, key in ipairs(KEYS) do
  local n = tonumber(ARGV[i])
  for j = i + 1, i + n do
    redis.call('ZADD', key, now, ARGV[j])
  end
  redis.call('PEXPIRE', key, ARGV[#ARGV])
  i = i + n + 1
end
"""

# The members seen within the TTL, after dropping older ones. ARGV: TTL in ms.
LIST_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000 + math.floor(tonumber(t[2]) / 1000)
redis.call('ZREMRANGEBYSCORE', KEYS[1], '-inf', '(' .. (now - tonumber(ARGV[1])))
return redis.call('ZRANGE', KEYS[1], 0, -1)
"""


class Presence:
    """The presence sets, and this process's share of them."""

    def __init__(self, client, settings):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._ttl_ms = int(settings.presence_ttl * 1000)
        self._refresh_every = settings.presence_ttl / 3
        self._holder = f"ws:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._touch = client.register_script(TOUCH_SCRIPT)
        self._list = client.register_script(LIST_SCRIPT)
        self._sockets = Counter()   # (room, user) -> WebSockets open here
        self._seen = set()          # (room, user) seen over HTTP since the last flush
        self._ticker = None

    def _key(self, room):
        return f"{self._prefix}{room}:presence"

    def users(self, room):
        """The users present in room, each once, sorted by code point."""
        try:
            members = self._list(keys=[self._key(room)], args=[self._ttl_ms])
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        return sorted({m.decode().split("\n", 1)[0] for m in members})

    def socket_opened(self, room, user):
        """A WebSocket of user's joined room here: present from now on."""
        self._start()
        self._sockets[room, user] += 1
        if self._sockets[room, user] == 1:
            self._send({room: [f"{user}\n{self._holder}"]})

    def socket_closed(self, room, user):
        """Absent once user's last WebSocket in room here closes (if no other holds them)."""
        self._sockets[room, user] -= 1
        if self._sockets[room, user] <= 0:
            del self._sockets[room, user]
            self._remove(room, f"{user}\n{self._holder}")

    def seen(self, room, user, now=False):
        """user polled or loaded a page in room: present for the TTL.

        Batched into the next flush, or sent at once when `now`.
        """
        if now:
            self._send({room: [f"{user}\nhttp"]})
        else:
            self._start()
            self._seen.add((room, user))

    def left(self, room, user):
        """user left room through a page: their HTTP presence ends now."""
        self._remove(room, f"{user}\nhttp")

    def _remove(self, room, member):
        try:
            self._redis.zrem(self._key(room), member)
        except redis.RedisError as exc:
            log.warning("presence not updated: %s", exc)

    def _send(self, members_by_room):
        keys, args = [], []
        for room, members in members_by_room.items():
            keys.append(self._key(room))
            args += [len(members), *members]
        try:
            self._touch(keys=keys, args=[*args, self._ttl_ms * 2])
        except redis.RedisError as exc:
            log.warning("presence not updated: %s", exc)

    def _start(self):
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick_forever)

    def _tick_forever(self):
        """Flushes HTTP sightings every PRESENCE_FLUSH_INTERVAL; refreshes sockets every TTL/3."""
        since_refresh = 0.0
        while True:
            gevent.sleep(PRESENCE_FLUSH_INTERVAL)
            since_refresh += PRESENCE_FLUSH_INTERVAL
            batch = {}
            seen, self._seen = self._seen, set()
            for room, user in seen:
                batch.setdefault(room, []).append(f"{user}\nhttp")
            if since_refresh >= self._refresh_every:
                since_refresh = 0.0
                for room, user in self._sockets:
                    batch.setdefault(room, []).append(f"{user}\n{self._holder}")
            if batch:
                self._send(batch)


@bp.get("/presence")
def presence():
    room, _, _ = read_query(request.environ, user_required=False)
    users = current_app.extensions["chat"].presence.users(room)
    return jsonify(room=room, users=users)
