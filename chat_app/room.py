"""The Redis side of a room: posting (one Lua script), the archive, the ids.

Keys of a room R, under the prefix P:
    P R:last         the newest id handed out
    P R:archive      the newest CHAT_ARCHIVE_SIZE events, oldest first (JSON)
    P R:rate:U       user U's token bucket for messages
and its pub/sub channel is `P R:events`, carrying "<prev id> <id> <event JSON>".
"""

import time

import redis

from .config import HISTORY_FIRST_WINDOW, HISTORY_WINDOW_GROWTH
from .events import event_fields, event_id
from .exceptions import RateLimited, StoreUnavailable
from .metrics import EVENTS_POSTED, POST_SECONDS, POSTS_REFUSED, REDIS_ERRORS

# Posts one event atomically, so that publication order is id order.
# KEYS: last id, archive, and for a rate-limited message the sender's bucket.
# ARGV: event fields (JSON members), archive size, channel, burst, refill/s.
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
redis.call('PUBLISH', ARGV[3], string.format('%d %d ', last, id) .. event)
return event
"""

# The archived events with id > after, oldest first: read from the tail in
# windows of growing size (each window the part of the list just before the
# last one), until an event not newer than after, or the head, is reached.
# KEYS: the archive (oldest first, ids strictly increasing, each event's JSON
# beginning {"id":N,). ARGV: after (decimal digits, no leading zero), the
# first window, the growth of each next one.
# Ids are compared as digit strings (longer is larger), so any after is
# exact: no conversion to a Lua number, which is a double in Redis's Lua.
HISTORY_SCRIPT = """
local after, window, growth = ARGV[1], tonumber(ARGV[2]), tonumber(ARGV[3])
local function newer(raw)
  local id = string.match(raw, '^{"id":(%d+),')
  return #id > #after or (#id == #after and id > after)
end
local found, read = {}, 0
repeat
  local chunk = redis.call('LRANGE', KEYS[1], -(read + window), -(read + 1))
  local i = #chunk
  while i > 0 and newer(chunk[i]) do
    found[#found + 1] = chunk[i]
    i = i - 1
  end
  local done = i > 0 or #chunk < window  -- passed after, or read the head
  read, window = read + window, window * growth
until done
local oldest_first = {}
for j = #found, 1, -1 do
  oldest_first[#oldest_first + 1] = found[j]
end
return oldest_first
"""


class Rooms:
    """Every room's shared state, kept in Redis; safe to use from any greenlet."""

    def __init__(self, client, settings):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._archive_size = str(settings.archive_size)
        self._burst = str(settings.rate_burst)
        self._per_sec = repr(float(settings.rate_per_sec))
        self._post = client.register_script(POST_SCRIPT)
        self._history = client.register_script(HISTORY_SCRIPT)

    def channel(self, room):
        return f"{self._prefix}{room}:events"

    def post(self, room, kind, user, text="", limited=True):
        """Posts one event; returns its JSON (bytes). One round trip to Redis.

        A message takes a token from its sender's rate bucket, unless not
        `limited` (the server API's messages).
        """
        keys = [f"{self._prefix}{room}:last", f"{self._prefix}{room}:archive"]
        if kind == "message" and limited:
            keys.append(f"{self._prefix}{room}:rate:{user}")
        args = [event_fields(kind, room, user, text), self._archive_size,
                self.channel(room), self._burst, self._per_sec]
        started = time.perf_counter()
        try:
            event = self._post(keys=keys, args=args)
        except redis.RedisError as exc:
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
            return newer_than(self._tail_after(room, after), after)
        except redis.RedisError as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc

    def _tail_after(self, room, after):
        """A tail of the room's archive (raw events) holding every event with id > after.

        after <= 0: the whole archive (LRANGE 0 -1). Otherwise what Redis
        reads follows what the caller receives, not the archive's size (the
        archive is oldest first and its ids strictly increase), in at most two
        round trips. First a plain LRANGE of the newest HISTORY_FIRST_WINDOW
        events: enough for a resume, a long poll or a gap fill a few events
        behind, and cheaper in Redis than the script's EVALSHA (which costs
        more than reading a 100-event archive whole). Only when every event of
        that window is newer than after, the history script: it reads back
        from the tail in growing windows, as far as it must, in one atomic
        snapshot (between two LRANGEs, posts trimming the list would shift
        their indexes), and returns only the newer events. In all, Redis reads
        at most 2 * HISTORY_FIRST_WINDOW events plus HISTORY_WINDOW_GROWTH per
        event returned. Each command names the one archive key (Redis Cluster).
        """
        key = f"{self._prefix}{room}:archive"
        if after <= 0:
            return self._redis.lrange(key, 0, -1)
        window = self._redis.lrange(key, -HISTORY_FIRST_WINDOW, -1)
        if len(window) < HISTORY_FIRST_WINDOW or event_id(window[0]) <= after:
            return window  # the whole archive, or it reaches back to after
        return self._history(keys=[key], args=[after, HISTORY_FIRST_WINDOW, HISTORY_WINDOW_GROWTH])

    def healthy(self):
        """Whether Redis answers a PING now."""
        try:
            return bool(self._redis.ping())
        except redis.RedisError:
            return False


def newer_than(archive, after):
    """The (id, JSON) pairs of the events of archive (raw, oldest first, ids
    increasing) with id > after: its tail, found by reading from the end."""
    newer = []
    for raw in reversed(archive):
        eid = event_id(raw)
        if eid <= after:
            break
        newer.append((eid, raw))
    newer.reverse()
    return newer
