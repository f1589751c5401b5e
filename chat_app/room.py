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

from .config import HISTORY_FIRST_WINDOW, HISTORY_WINDOW_GROWTH
from .events import event_fields, event_id
from .exceptions import RateLimited, StoreUnavailable
from .store import STORE_ERRORS
from .metrics import POST_SECONDS, POSTED, POSTS_REFUSED, REDIS_ERRORS

# Lua shared by the scripts below: the time, and post(), which posts one event.
# post(fields, archive size, channel, publishing command) uses KEYS[1] (the
# last id) and KEYS[2] (the archive) and returns the event's JSON; the
# publishing command is PUBLISH, or SPUBLISH on a cluster.
# The id is max(last + 1, Redis time in microseconds): above every id handed
# out before, also after Redis restarts empty (unless a room sustained more
# than a million posts a second). The event's prev is the last id (0 when
# Redis knew none), so the events of a room form a chain and a gap shows.
# Each script posts atomically, so that publication order is id order.
_POST_LUA = """
local t = redis.call('TIME')
local now = tonumber(t[1]) * 1000000 + tonumber(t[2])
local function post(fields, size, channel, publish)
  local last = tonumber(redis.call('GET', KEYS[1])) or 0
  local id = math.max(last + 1, now)
  local event = string.format('{"id":%d,%s,"ts":%d,"prev":%d}',
                              id, fields, math.floor(now / 1000), last)
  redis.call('SET', KEYS[1], string.format('%d', id))
  redis.call('RPUSH', KEYS[2], event)
  redis.call('LTRIM', KEYS[2], -tonumber(size), -1)
  redis.call(publish, channel, string.format('%d %d ', last, id) .. event)
  return event
end
"""

# Lua: tail_after(archive, after), the archived events with id > after,
# oldest first; after is decimal digits, no leading zero ('0': the whole
# archive). Read from the tail in windows of growing size (each the part of
# the list just before the last one: HISTORY_FIRST_WINDOW events, then
# HISTORY_WINDOW_GROWTH times more each time) until an event not newer than
# after, or the head, is reached: what Redis reads follows what is returned,
# not the archive's size, in one atomic snapshot. Ids are compared as digit
# strings (longer is larger), so any after is exact: no conversion to a Lua
# number, which is a double in Redis's Lua.
_TAIL_LUA = """
local function tail_after(key, after)
  if after == '0' then
    return redis.call('LRANGE', key, 0, -1)
  end
  local function newer(raw)
    local id = string.match(raw, '^{"id":(%d+),')
    return #id > #after or (#id == #after and id > after)
  end
  local found, read, window = {}, 0, FIRST_WINDOW
  repeat
    local chunk = redis.call('LRANGE', key, -(read + window), -(read + 1))
    local i = #chunk
    while i > 0 and newer(chunk[i]) do
      found[#found + 1] = chunk[i]
      i = i - 1
    end
    local done = i > 0 or #chunk < window
    read, window = read + window, window * WINDOW_GROWTH
  until done
  local oldest_first = {}
  for j = #found, 1, -1 do
    oldest_first[#oldest_first + 1] = found[j]
  end
  return oldest_first
end
""".replace("FIRST_WINDOW", str(HISTORY_FIRST_WINDOW)).replace(
    "WINDOW_GROWTH", str(HISTORY_WINDOW_GROWTH))

# The archived events with id > after (ARGV[1]) of the archive KEYS[1].
HISTORY_SCRIPT = _TAIL_LUA + """
return tail_after(KEYS[1], ARGV[1])
"""

# Posts one event. KEYS: last id, archive, and for a rate-limited message the
# sender's bucket. ARGV: event fields (JSON members), archive size, channel,
# burst, refill/s, publishing command. Returns the event's JSON, or false
# when the rate limit refuses it.
POST_SCRIPT = _POST_LUA + """
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
return post(ARGV[1], ARGV[2], ARGV[3], ARGV[6])
"""

# A WebSocket or stream enters: the archive after its lastReceived, its user's
# presence, its join event, in one round trip. KEYS: last id, archive,
# presence set. ARGV: the join's fields, archive size, channel, publishing
# command, after, then a presence member to raise ('' for none), its score
# (ms) and the set's lifetime (ms). Returns {archived events, the join}.
JOIN_SCRIPT = _POST_LUA + _TAIL_LUA + """
local archived = tail_after(KEYS[2], ARGV[5])
if ARGV[6] ~= '' then
  redis.call('ZADD', KEYS[3], 'GT', ARGV[7], ARGV[6])
  redis.call('PEXPIRE', KEYS[3], ARGV[8])
end
return {archived, post(ARGV[1], ARGV[2], ARGV[3], ARGV[4])}
"""

# A WebSocket or stream leaves: its user's presence member removed (ARGV[5],
# '' for none) and its leave event posted, in one round trip. KEYS and the
# first four ARGV as JOIN_SCRIPT's. Returns the leave's JSON.
LEAVE_SCRIPT = _POST_LUA + """
if ARGV[5] ~= '' then
  redis.call('ZREM', KEYS[3], ARGV[5])
end
return post(ARGV[1], ARGV[2], ARGV[3], ARGV[4])
"""


class Script:
    """A Lua script run by its SHA1, its text sent only to a Redis (or a
    cluster's shard, after a failover) that does not have it yet."""

    def __init__(self, text):
        self.text = text
        self.sha = hashlib.sha1(text.encode()).hexdigest()

    def __call__(self, client, keys, args):
        try:
            return client.evalsha(self.sha, len(keys), *keys, *args)
        except redis.exceptions.NoScriptError:
            return client.eval(self.text, len(keys), *keys, *args)


def namespace(prefix, room, cluster):
    """The start of every key and channel name of room: "P R:", or on a
    cluster "P{R}:" (room names have no braces; the prefix is refused if it has)."""
    return f"{prefix}{{{room}}}:" if cluster else f"{prefix}{room}:"


_POST, _JOIN, _LEAVE = Script(POST_SCRIPT), Script(JOIN_SCRIPT), Script(LEAVE_SCRIPT)
_HISTORY = Script(HISTORY_SCRIPT)


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
        event = self._run(_POST, keys, args)
        if event is None:
            POSTS_REFUSED.labels("rate").inc()
            raise RateLimited(room, user)
        POSTED[kind].inc()
        return event

    def join(self, room, user, after, presence=None):
        """Posts user's join and returns the archived events with id > after,
        as history does, read just before it: one round trip to Redis. With
        presence = (member, score in ms, lifetime in ms), raises that member
        of the room's presence set in the same script."""
        member, score, ttl = presence or ("", 0, 0)
        keys = [self.key(room, "last"), self.key(room, "archive"), self.key(room, "presence")]
        args = [*self._event_args(room, "join", user), str(max(after, 0)), member, score, ttl]
        archived, _ = self._run(_JOIN, keys, args)
        POSTED["join"].inc()
        return [(event_id(raw), raw) for raw in archived]

    def leave(self, room, user, member=""):
        """Posts user's leave, and removes a member of the room's presence set
        (none when ""): one round trip to Redis. Returns the event's JSON."""
        keys = [self.key(room, "last"), self.key(room, "archive"), self.key(room, "presence")]
        event = self._run(_LEAVE, keys, [*self._event_args(room, "leave", user), member])
        POSTED["leave"].inc()
        return event

    def _event_args(self, room, kind, user):
        """The first ARGV of JOIN_SCRIPT and LEAVE_SCRIPT: the event, where it goes."""
        return [event_fields(kind, room, user, ""), self._archive_size, self.channel(room),
                self._publish]

    def _run(self, script, keys, args):
        """Runs a script that posts; Redis errors become StoreUnavailable."""
        started = time.perf_counter()
        try:
            result = script(self._redis, keys, args)
        except STORE_ERRORS as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc
        POST_SECONDS.observe(time.perf_counter() - started)
        return result

    def history(self, room, after=0):
        """The archived events with id > after, oldest first, as (id, JSON) pairs."""
        return self.histories([(room, after)])[0]

    def histories(self, wanted):
        """history(room, after) for each (room, after) of wanted, in one round
        trip to Redis (a second for any room more than HISTORY_FIRST_WINDOW
        events behind)."""
        try:
            if len(wanted) == 1:  # the common case, without a pipeline's cost
                windows = [self._redis.lrange(*self._window(*wanted[0]))]
            else:
                pipe = self._redis.pipeline(transaction=False)
                for room, after in wanted:
                    pipe.lrange(*self._window(room, after))
                windows = pipe.execute()
            return [newer_than(self._tail_after(room, after, window), after)
                    for (room, after), window in zip(wanted, windows)]
        except STORE_ERRORS as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc

    def _window(self, room, after):
        """The LRANGE arguments of the read that starts a history: the whole
        archive for after <= 0, else its newest HISTORY_FIRST_WINDOW events."""
        return self.key(room, "archive"), -HISTORY_FIRST_WINDOW if after > 0 else 0, -1

    def _tail_after(self, room, after, window):
        """A tail of the room's archive (raw events) holding every event with
        id > after, given `window`, what the LRANGE of _window read.

        What Redis reads follows what the caller receives, not the archive's
        size (the archive is oldest first and its ids strictly increase). The
        window is enough for a resume, a long poll or a gap fill a few events
        behind, and cheaper in Redis than the script's EVALSHA (which costs
        more than reading a 100-event archive whole). Only when every event of
        the window is newer than after, the history script: it reads back from
        the tail in growing windows, as far as it must, in one atomic snapshot
        (between two LRANGEs, posts trimming the list would shift their
        indexes), and returns only the newer events. In all, Redis reads at
        most 2 * HISTORY_FIRST_WINDOW events plus HISTORY_WINDOW_GROWTH per
        event returned. Each command names the one archive key (Redis Cluster).
        """
        if after <= 0 or len(window) < HISTORY_FIRST_WINDOW or event_id(window[0]) <= after:
            return window  # the whole archive, or it reaches back to after
        return _HISTORY(self._redis, [self.key(room, "archive")], [str(after)])

    def healthy(self):
        """Whether Redis answers a PING now."""
        try:
            return bool(self._redis.ping())
        except STORE_ERRORS:
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
