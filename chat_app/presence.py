"""Who is in a room, across every process: GET /presence, and its Redis side.

A room's presence is a sorted set `P R:presence` (`P{R}:presence` on a
cluster, in the room's slot) of "<user>\n<holder>" members, scored by when they were seen (ms, the processes' clocks):

- "<user>\n<process>": user's WebSockets and event streams on one process,
  kept fresh by that process every TTL/3 and removed when its last one there
  closes;
- "<user>\nhttp": when user last loaded a page, or started or ended a long poll;
- "<user>\nleft": when user last left through a page; it hides an older "http".

A user is present while any member of theirs is younger than
CHAT_PRESENCE_TTL (an "http" one only if younger than their "left"): listed
once with two tabs, still there after closing one, and gone within the TTL
when their process dies. A long poll counts when it ends, but only if its user
did not leave while it waited: one in flight when they left does not bring
them back (SIGHTING_SCRIPT). Each process writes in batches: its sightings
once a second (or every TTL/4 if that is sooner) in one round trip (on a
cluster, a script call per room), and its sockets every TTL/3, a round trip
per YIELD_EVERY of them.
"""

import logging
import os
import socket
import time
import uuid
from collections import Counter

import gevent
from gevent.pool import Pool
import redis
from flask import Blueprint, jsonify

from .access import admitted
from .chat import current_chat
from .config import PRESENCE_CLUSTER_CALLS, PRESENCE_FLUSH_INTERVAL, YIELD_EVERY
from .exceptions import StoreUnavailable
from .room import Script, namespace
from .store import STORE_ERRORS

log = logging.getLogger(__name__)
bp = Blueprint("presence", __name__)

# Writes one room's HTTP sightings, each unless its user left after it began.
# KEYS: the room's presence set (one key: on a cluster, one slot per call).
# ARGV: the set's lifetime (ms), then per sighting: user, began (ms), seen (ms).
SIGHTING_SCRIPT = """
local key, kept = KEYS[1], false
for i = 2, #ARGV, 3 do
  local user, began, seen = ARGV[i], ARGV[i + 1], ARGV[i + 2]
  local left = tonumber(redis.call('ZSCORE', key, user .. '\\nleft')) or -1
  if left < tonumber(began) then
    redis.call('ZADD', key, 'GT', seen, user .. '\\nhttp')
    kept = true
  end
end
if kept then
  redis.call('PEXPIRE', key, ARGV[1])
end
"""
SIGHTING = Script(SIGHTING_SCRIPT)


def _now_ms():
    return int(time.time() * 1000)


class Presence:
    """The presence sets, and this process's share of them."""

    def __init__(self, client, settings, cluster=False):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._cluster = cluster
        self._ttl_ms = int(settings.presence_ttl * 1000)
        self._refresh_every = settings.presence_ttl / 3
        self._flush_every = min(PRESENCE_FLUSH_INTERVAL, settings.presence_ttl / 4)
        self._holder = f"ws:{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._sockets = Counter()   # (room, user) -> WebSockets and streams open here
        self._seen = {}             # (room, user) -> (began, seen) ms over HTTP, not yet written
        self._ticker = None

    def _key(self, room):
        return namespace(self._prefix, room, self._cluster) + "presence"

    def users(self, room):
        """The users present in room, each once, sorted by code point."""
        pipe = self._redis.pipeline(transaction=False)
        pipe.zremrangebyscore(self._key(room), "-inf", f"({_now_ms() - self._ttl_ms}")
        pipe.zrange(self._key(room), 0, -1, withscores=True)
        try:
            _, members = pipe.execute()
        except STORE_ERRORS as exc:
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
        """A WebSocket or event stream of user's is joining room here: present
        from now on. Returns what the join must write to the room's set
        (Rooms.join): (member, score in ms, the set's lifetime in ms), or None
        when another of user's sockets here already holds them present."""
        self._start()
        self._sockets[room, user] += 1
        if self._sockets[room, user] == 1:
            return f"{user}\n{self._holder}", _now_ms(), self._ttl_ms * 2
        return None

    def socket_closed(self, room, user):
        """A WebSocket or stream of user's in room here has closed (or failed
        to join). Returns the member the leave must remove from the room's set
        (Rooms.leave) when it was user's last here, else ""."""
        self._sockets[room, user] -= 1
        if self._sockets[room, user] > 0:
            return ""
        del self._sockets[room, user]
        return f"{user}\n{self._holder}"

    def seen(self, room, user, now=False):
        """user loaded a page or started a long poll: present for the TTL from now.

        Written with the next batch, or at once when `now`. Returns the time of
        the sighting, for `poll_ended`.
        """
        at = _now_ms()
        if now:
            self._write({(room, f"{user}\nhttp"): at})
        else:
            self._note(room, user, at, at)
        return at

    def poll_ended(self, room, user, began):
        """user's long poll, begun at `began` (ms), ended: present for the TTL
        from now, unless they left room since it began. Written with the next batch."""
        self._note(room, user, began, _now_ms())

    def _note(self, room, user, began, seen):
        """Adds a sighting to the next batch. Two of a user's merge into the
        latest start and the latest sighting: if either counts, the user came
        back after any leave, and is seen until the later one."""
        self._start()
        pending = self._seen.get((room, user))
        if pending:
            began, seen = max(began, pending[0]), max(seen, pending[1])
        self._seen[room, user] = (began, seen)

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
        except STORE_ERRORS as exc:
            log.warning("presence not updated: %s", exc)

    def _start(self):
        if self._ticker is None:
            self._ticker = gevent.spawn(self._tick_forever)

    def _tick_forever(self):
        """Writes the sightings at least every TTL/4; refreshes sockets every TTL/3."""
        since_refresh = 0.0
        while True:
            gevent.sleep(self._flush_every)
            since_refresh += self._flush_every
            seen, self._seen = self._seen, {}
            if seen:
                self._flush_sightings(seen)
            if since_refresh >= self._refresh_every:
                since_refresh = 0.0
                self._refresh_sockets()

    def _refresh_sockets(self):
        """Marks every user with a socket here as seen now, YIELD_EVERY members
        a round trip, so a worker's tens of thousands never hold up its event loop."""
        now = _now_ms()
        members = [(room, f"{user}\n{self._holder}") for room, user in self._sockets]
        for start in range(0, len(members), YIELD_EVERY):
            self._write({member: now for member in members[start:start + YIELD_EVERY]})

    def _flush_sightings(self, seen):
        """Writes pending HTTP sightings, a script call per room: all in one
        pipeline (one round trip), or on a cluster, which pipelines no
        scripts, PRESENCE_CLUSTER_CALLS at a time."""
        by_room = {}
        for (room, user), (began, at) in seen.items():
            by_room.setdefault(room, []).extend([user, began, at])
        calls = [([self._key(room)], [self._ttl_ms * 2, *sightings])
                 for room, sightings in by_room.items()]
        try:
            if self._cluster:
                Pool(PRESENCE_CLUSTER_CALLS).map(self._run_sighting, calls)
            else:
                self._pipeline_sightings(calls)
        except STORE_ERRORS as exc:
            log.warning("presence not updated: %s", exc)

    def _run_sighting(self, call):
        keys, args = call
        SIGHTING(self._redis, keys, args)

    def _pipeline_sightings(self, calls):
        for by_sha in (True, False):
            pipe = self._redis.pipeline(transaction=False)
            for keys, args in calls:
                if by_sha:
                    pipe.evalsha(SIGHTING.sha, len(keys), *keys, *args)
                else:
                    pipe.eval(SIGHTING.text, len(keys), *keys, *args)
            try:
                pipe.execute()
                return
            except redis.exceptions.NoScriptError:  # a Redis new to it: the script is
                continue                            # idempotent, so run it all again


@bp.get("/presence")
def presence():
    room, _, _ = admitted()
    return present(room)


def present(room):
    """The answer of GET /presence?room=R: {"room": R, "users": [...]}."""
    return jsonify(room=room, users=current_chat().presence.users(room))
