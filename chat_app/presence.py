"""Who is in a room, across every process: GET /presence, and its Redis side.

A room's presence is a sorted set `P R:presence` of "<user>\n<holder>"
members, scored by when they were seen (ms, the processes' clocks):

- "<user>\n<process>": user's WebSockets on one process, kept fresh by that
  process every TTL/3 and removed when its last one there closes;
- "<user>\nhttp": when user last started a long poll or loaded a refresh page;
- "<user>\nleft": when user last left through a page; it hides an older "http".

A user is present while any member of theirs is younger than
CHAT_PRESENCE_TTL (an "http" one only if younger than their "left"): listed
once with two tabs, still there after closing one, and gone within the TTL
when their process dies. Sightings keep the time they happened, so a long
poll that ends after its user left does not bring them back. Each process
writes in batches: once a second for the sightings, every TTL/3 for its
sockets, in one round trip whatever the number of rooms and users.
"""

import logging
import os
import socket
import time
import uuid
from collections import Counter

import gevent
import redis
from flask import Blueprint, jsonify, request

from . import current_chat
from .config import PRESENCE_FLUSH_INTERVAL
from .events import read_query
from .room import StoreUnavailable

log = logging.getLogger(__name__)
bp = Blueprint("presence", __name__)


def _now_ms():
    return int(time.time() * 1000)


class Presence:
    """The presence sets, and this process's share of them."""

    def __init__(self, client, settings):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._ttl_ms = int(settings.presence_ttl * 1000)
        self._refresh_every = settings.presence_ttl / 3
        self._holder = f"ws:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sockets = Counter()   # (room, user) -> WebSockets open here
        self._seen = {}             # (room, user) -> ms seen over HTTP, not yet written
        self._ticker = None

    def _key(self, room):
        return f"{self._prefix}{room}:presence"

    def users(self, room):
        """The users present in room, each once, sorted by code point."""
        pipe = self._redis.pipeline()
        pipe.zremrangebyscore(self._key(room), "-inf", f"({_now_ms() - self._ttl_ms}")
        pipe.zrange(self._key(room), 0, -1, withscores=True)
        try:
            _, members = pipe.execute()
        except redis.RedisError as exc:
            raise StoreUnavailable(str(exc)) from exc
        present, http, left = set(), {}, {}
        for member, score in members:
            user, holder = member.decode().split("\n", 1)
            if holder == "http":
                http[user] = score
            elif holder == "left":
                left[user] = score
            else:
                present.add(user)
        present.update(user for user, score in http.items() if score > left.get(user, -1))
        return sorted(present)

    def socket_opened(self, room, user):
        """A WebSocket of user's joined room here: present from now on."""
        self._start()
        self._sockets[room, user] += 1
        if self._sockets[room, user] == 1:
            self._write({(room, f"{user}\n{self._holder}"): _now_ms()})

    def socket_closed(self, room, user):
        """Absent once user's last WebSocket in room here closes (if nothing else holds them)."""
        self._sockets[room, user] -= 1
        if self._sockets[room, user] <= 0:
            del self._sockets[room, user]
            try:
                self._redis.zrem(self._key(room), f"{user}\n{self._holder}")
            except redis.RedisError as exc:
                log.warning("presence not updated: %s", exc)

    def seen(self, room, user, now=False):
        """user started a long poll or loaded a page: present for the TTL from now.

        Written with the next batch, or at once when `now`.
        """
        if now:
            self._write({(room, f"{user}\nhttp"): _now_ms()})
        else:
            self._start()
            self._seen[room, user] = _now_ms()

    def left(self, room, user):
        """user left room through a page: what was seen over HTTP before now no longer counts."""
        self._write({(room, f"{user}\nleft"): _now_ms()})

    def _write(self, scores):
        """Raises members' scores (never lowers them), in one round trip."""
        pipe = self._redis.pipeline(transaction=False)
        by_key = {}
        for (room, member), score in scores.items():
            by_key.setdefault(self._key(room), {})[member] = score
        for key, members in by_key.items():
            pipe.zadd(key, members, gt=True)
            pipe.pexpire(key, self._ttl_ms * 2)
        try:
            pipe.execute()
        except redis.RedisError as exc:
            log.warning("presence not updated: %s", exc)

    def _start(self):
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick_forever)

    def _tick_forever(self):
        """Writes the sightings every PRESENCE_FLUSH_INTERVAL; refreshes sockets every TTL/3."""
        since_refresh = 0.0
        while True:
            gevent.sleep(PRESENCE_FLUSH_INTERVAL)
            since_refresh += PRESENCE_FLUSH_INTERVAL
            seen, self._seen = self._seen, {}
            batch = {(room, f"{user}\nhttp"): ms for (room, user), ms in seen.items()}
            if since_refresh >= self._refresh_every:
                since_refresh = 0.0
                now = _now_ms()
                batch.update({(room, f"{user}\n{self._holder}"): now
                              for room, user in self._sockets})
            if batch:
                self._write(batch)


@bp.get("/presence")
def presence():
    room, _, _ = read_query(request.environ, user_required=False)
    users = current_chat().presence.users(room)
    return jsonify(room=room, users=users)
