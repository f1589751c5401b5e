"""The Redis side of a room: posting (one Lua script), the archive, the ids.

Keys of a room R, under the prefix P:
    P R:last         the newest id handed out
    P R:archive      the newest CHAT_ARCHIVE_SIZE events, oldest first (JSON)
    P R:rate:U       user U's token bucket for messages
    P R:presence     who is in the room (presence.py)
and its pub/sub channel is `P R:events`, carrying "<prev id> <id> <event JSON>".
On a Redis Cluster R is a hash tag, `P{R}:last` and so on, so every key and
the channel of a room live in one slot, on one shard, and the channel is a
shard channel (SPUBLISH, SSUBSCRIBE).
"""

import hashlib
import time

import redis

from .events import event_fields, event_id
from .exceptions import RateLimited, StoreUnavailable
from .store import STORE_ERRORS
from .metrics import EVENTS_POSTED, POST_SECONDS, POSTS_REFUSED, REDIS_ERRORS

# Posts one event atomically, so that publication order is id order.
# KEYS: last id, archive, and for a rate-limited message the sender's bucket.
# ARGV: event fields (JSON members), archive size, channel, burst, refill/s,
# and the publishing command (PUBLISH, or SPUBLISH on a cluster).
# Returns the event's JSON, or false when the rate limit refuses it.
# The id is max(last + 1, Redis time in microseconds): above every id handed
# out before, also after Redis restarts empty (unless a room sustained more
# than a million posts a second). The event's prev is the last id (0 when
# Redis knew none), so the events of a room form a chain and a gap shows.
POST_SCRIPT = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
if KEYS[3] then
  local burst, per_sec = tonumber(ARGV[4]), tonumber(ARGV[5])
  local bucket = redis.call('HMGET', KEYS[3], 'tokens', 'at')
  local tokens = tonumber(bucket[1]) or burst
  local at = tonumber(bucket[2]) or now
  if now > at then
    tokens = math.min(burst, tokens + (now - at) * per_sec / 1000000)
  end
  if tokens < 1 then
    return false
  end
  redis.call('HSET', KEYS[3], 'tokens', tostring(tokens - 1),
             'at', string.format('%d', now))
  redis.call('PEXPIRE', KEYS[3], math.ceil(burst / per_sec * 1000) + 1000)
end
local last = tonumber(redis.call('GET', KEYS[1])) or 0
local id = math.max(last + 1, now)
local event = string.format('{"id":%d,%s,"ts":%d,"prev":%d}',
                            id, ARGV[1], math.floor(now / 1000), last)
redis.call('SET', KEYS[1], string.format('%d', id))
redis.call('RPUSH', KEYS[2], event)
redis.call('LTRIM', KEYS[2], -tonumber(ARGV[2]), -1)
redis.call(ARGV[6], ARGV[3], string.format('%d %d ', last, id) .. event)
return event
"""


def namespace(prefix, room, cluster):
    """The start of every key and channel name of room: "P R:", or on a
    cluster "P{R}:" (room names have no braces; the prefix is refused if it has)."""
    return f"{prefix}{{{room}}}:" if cluster else f"{prefix}{room}:"


def run_script(client, script, sha, keys, args):
    """Runs a Lua script by its SHA1, sending its text only to a Redis (or a
    cluster's shard, after a failover) that does not have it yet."""
    try:
        return client.evalsha(sha, len(keys), *keys, *args)
    except redis.exceptions.NoScriptError:
        return client.eval(script, len(keys), *keys, *args)


class Rooms:
    """Every room's shared state, kept in Redis; safe to use from any greenlet."""

    def __init__(self, client, settings, cluster=False):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._cluster = cluster
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        self._archive_size = str(settings.archive_size)
        self._burst = str(settings.rate_burst)
        self._per_sec = repr(float(settings.rate_per_sec))
        self._post_sha = hashlib.sha1(POST_SCRIPT.encode()).hexdigest()

    def key(self, room, name):
        """The name of room's key (or channel) `name`: "last", "archive", "events"..."""
        return namespace(self._prefix, room, self._cluster) + name

    def channel(self, room):
        return self.key(room, "events")

    def post(self, room, kind, user, text="", limited=True):
        """Posts one event; returns its JSON (bytes). One round trip to Redis.

        A message takes a token from its sender's rate bucket, unless not
        `limited` (the server API's messages).
        """
        keys = [self.key(room, "last"), self.key(room, "archive")]
        if kind == "message" and limited:
            keys.append(self.key(room, f"rate:{user}"))
        args = [event_fields(kind, room, user, text), self._archive_size,
                self.channel(room), self._burst, self._per_sec, self._publish]
        started = time.perf_counter()
        try:
            event = run_script(self._redis, POST_SCRIPT, self._post_sha, keys, args)
        except STORE_ERRORS as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc
        POST_SECONDS.observe(time.perf_counter() - started)
        if event is None:
            POSTS_REFUSED.labels("rate").inc()
            raise RateLimited(room, user)
        EVENTS_POSTED.labels(kind).inc()
        return event

    def history(self, room, after=0):
        """The archived events with id > after, oldest first, as (id, JSON) pairs."""
        try:
            archive = self._redis.lrange(self.key(room, "archive"), 0, -1)
        except STORE_ERRORS as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc
        newer = []
        for raw in reversed(archive):
            eid = event_id(raw)
            if eid <= after:
                break
            newer.append((eid, raw))
        newer.reverse()
        return newer

    def healthy(self):
        """Whether Redis answers a PING now."""
        try:
            return bool(self._redis.ping())
        except STORE_ERRORS:
            return False
