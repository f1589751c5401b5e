"""This process's hub: its one pub/sub connection, and each room's listeners.

A post runs the Lua script (room.py), which publishes "<prev> <id> <event>"
on the room's channel. The hub reads its one pub/sub connection, takes every
message already buffered (a batch), puts each room's messages in order with
the room's Sequence (sequence.py), backfilling from the archive when a prev
id shows a gap, and hands the room's Batch to each listener:

    listener.deliver(batch) -> events taken     (never blocks or yields)
    listener.ping()                             (every CHAT_PING_INTERVAL)
    listener.close(code, reason)                (shutdown, moderation)

A WebSocket client (client.py), an event stream (stream.py) and a long poll
(longpoll.py) are listeners; each owns its wire format and its socket, and
the hub knows nothing of either. Redis going away only delays delivery: the
reader reconnects with backoff, resubscribes and backfills.
"""

import logging
import time

import gevent
import redis
from gevent.event import Event
from gevent.lock import Semaphore

from .config import (
    PUBSUB_BACKOFF_MAX,
    PUBSUB_BACKOFF_MIN,
    PUBSUB_BATCH_MAX,
    RECONNECT_WAIT,
    SUBSCRIBE_TIMEOUT,
)
from .exceptions import ShuttingDown, StoreUnavailable
from .metrics import FRAMES_DELIVERED, REDIS_ERRORS
from .sequence import Batch, CatchUp, Sequence, parse_published

log = logging.getLogger(__name__)


class Subscription:
    """This process's listeners of one room, and the room's Sequence."""

    def __init__(self, room, channel):
        self.room = room
        self.channel = channel
        self.sequence = Sequence()
        self.current = {}       # transport -> listeners up to date with the sequence
        self.joining = {}       # listener -> CatchUp, while it catches up
        self.users = 0          # listeners holding this subscription
        self.ready = Event()    # set while Redis confirms the subscription

    def listeners(self):
        for group in list(self.current.values()):
            yield from list(group)
        yield from list(self.joining)


def sort_replies(replies):
    """Pub/sub replies as ({channel: [published data]}, [channels confirmed]).

    Redis sends [b"message", channel, data] and [b"subscribe", channel, n];
    anything else it may push on the connection is ignored.
    """
    published, confirmed = {}, []
    for reply in replies:
        if not isinstance(reply, list) or len(reply) != 3:
            continue
        kind, channel, data = reply
        if kind == b"message":
            published.setdefault(channel, []).append(data)
        elif kind == b"subscribe":
            confirmed.append(channel)
    return published, confirmed


def read_batches(conn, interval):
    """Yields the replies on a pub/sub connection, a batch at a time.

    A batch is every reply already buffered. Batches are at least `interval`
    apart: a message that arrives sooner waits for the rest of the interval,
    so a busy room costs one write per listener per interval, not per message.
    """
    def reply():  # RESP3 (redis-py's default) sends pub/sub messages as pushes
        return conn.read_response(disconnect_on_error=False, push_request=True)

    last = 0.0
    while True:
        batch = [reply()]
        wait = last + interval - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        last = time.monotonic()
        while len(batch) < PUBSUB_BATCH_MAX and conn.can_read(timeout=0):
            batch.append(reply())
        yield batch


class Hub:
    """Owns this process's pub/sub connection; the only reader of it."""

    def __init__(self, rooms, pubsub_client, settings):
        self._rooms = rooms
        self._client = pubsub_client
        self._ping_interval = settings.ping_interval
        self._fanout_interval = settings.fanout_interval
        self._control = f"{settings.redis_prefix}hub"
        self._subs = {}          # room -> Subscription
        self._by_channel = {}    # channel (bytes) -> Subscription
        self._lock = Semaphore()  # orders (un)subscribe commands like _subs changes
        self._conn = None         # the pub/sub connection, while it is up
        self._greenlets = []
        self._stopping = False
        self._failing = Event()   # set while the last connection attempt has failed
        self._retry_now = Event()  # ends the reconnect backoff early
        self.connected = Event()  # set while the pub/sub connection is up

    def start(self):
        if not self._greenlets:
            self._greenlets = [gevent.spawn(self._read_forever),
                               gevent.spawn(self._ping_forever)]

    def stop(self):
        """Stops the reader and the pinger."""
        gevent.killall(self._greenlets)
        self._greenlets = []
        self._close()

    # --- listeners ------------------------------------------------------------

    def attach(self, listener, after):
        """Hands listener the archived events with id > after, then every new one.

        From the moment this returns the listener gets each event of its room
        once, in id order. Raises StoreUnavailable or ShuttingDown.
        """
        sub = self._acquire(listener.room)
        catch_up = sub.joining[listener] = CatchUp(after)
        try:
            archived = []
            if sub.sequence.needs_archive(after):
                archived = self._rooms.history(sub.room, after)
        except BaseException:
            del sub.joining[listener]
            self._release(sub)
            raise
        replay = catch_up.archived(archived)
        if replay is not None:
            FRAMES_DELIVERED.labels(listener.transport).inc(listener.deliver(replay))
        self._promote(sub, listener, catch_up)

    def detach(self, listener):
        sub = self._subs[listener.room]
        sub.current.get(listener.transport, set()).discard(listener)
        sub.joining.pop(listener, None)
        self._release(sub)

    def listeners(self):
        """Every listener of this process."""
        for sub in list(self._subs.values()):
            yield from sub.listeners()

    def shutdown(self):
        """Closes every listener with 1012; new ones are refused with ShuttingDown."""
        self._stopping = True
        for listener in self.listeners():
            listener.close(1012, "server restarting; reconnect with lastReceived")

    def _acquire(self, room):
        if self._stopping:
            raise ShuttingDown()
        if self._failing.is_set():  # Redis was away: try again now, not after the backoff
            self._retry_now.set()
            if not self.connected.wait(RECONNECT_WAIT):
                raise StoreUnavailable("the pub/sub connection to Redis is down")
        self.start()
        with self._lock:
            sub = self._subs.get(room)
            if sub is None:
                sub = self._subs[room] = Subscription(room, self._rooms.channel(room))
                self._by_channel[sub.channel.encode()] = sub
                self._command("SUBSCRIBE", sub.channel)
            sub.users += 1
        # Confirmed, or the connection failed (no need to wait out the timeout then).
        gevent.wait([sub.ready, self._failing], count=1, timeout=SUBSCRIBE_TIMEOUT)
        if not sub.ready.is_set():
            self._release(sub)
            raise StoreUnavailable("the pub/sub connection to Redis is down")
        return sub

    def _release(self, sub):
        with self._lock:
            sub.users -= 1
            if sub.users == 0 and self._subs.get(sub.room) is sub:
                del self._subs[sub.room]
                del self._by_channel[sub.channel.encode()]
                self._command("UNSUBSCRIBE", sub.channel)

    def _command(self, name, channel):
        """Sends (UN)SUBSCRIBE; if the connection is down, the reader resubscribes."""
        conn = self._conn
        if conn is None:
            return
        try:
            conn.send_command(name, channel)
        except (redis.RedisError, OSError) as exc:
            log.debug("%s %s failed: %s", name, channel, exc)

    # --- the pub/sub reader -------------------------------------------------------

    def _read_forever(self):
        backoff = PUBSUB_BACKOFF_MIN
        while True:
            try:
                conn = self._open()
                backoff = PUBSUB_BACKOFF_MIN
                for batch in read_batches(conn, self._fanout_interval):
                    self._dispatch(batch)
            except (redis.RedisError, OSError, StoreUnavailable) as exc:
                REDIS_ERRORS.inc()
                if not self._failing.is_set():
                    log.warning("redis pub/sub connection lost: %s; reconnecting", exc)
                self._failing.set()
                self._close()
                self._retry_now.clear()
                gevent.sleep(PUBSUB_BACKOFF_MIN)
                self._retry_now.wait(backoff - PUBSUB_BACKOFF_MIN)  # a listener may cut it short
                backoff = min(backoff * 2, PUBSUB_BACKOFF_MAX)

    def _open(self):
        """A new pub/sub connection, subscribed to the control channel and every room.

        The hub speaks SUBSCRIBE on a plain redis-py connection rather than
        through redis-py's PubSub: it keeps its own list of subscriptions, and
        reading replies straight off the connection costs half as much.
        """
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            with self._lock:
                conn.send_command("SUBSCRIBE", self._control,
                                  *[s.channel for s in self._subs.values()])
                self._conn = conn
        except BaseException:
            conn.disconnect()
            pool.release(conn)
            raise
        return conn

    def _close(self):
        self.connected.clear()
        with self._lock:
            conn, self._conn = self._conn, None
            for sub in self._subs.values():
                sub.ready.clear()
        if conn is not None:
            conn.disconnect()
            self._client.connection_pool.release(conn)

    def _dispatch(self, replies):
        published, confirmed = sort_replies(replies)
        for channel in confirmed:
            if channel == self._control.encode():
                if self._failing.is_set():
                    log.warning("redis pub/sub connection re-established")
                self._failing.clear()
                self.connected.set()
            elif channel in self._by_channel:
                self._subscribed(self._by_channel[channel])
        for channel, messages in published.items():
            sub = self._by_channel.get(channel)
            if sub is not None and sub.ready.is_set():
                self._receive(sub, messages)

    def _subscribed(self, sub):
        """Redis confirmed a subscription: backfill what it may have missed."""
        if sub.sequence.last_id is not None:
            self._fan_out(sub, sub.sequence.accept(
                self._rooms.history(sub.room, sub.sequence.last_id)))
        sub.ready.set()

    def _receive(self, sub, messages):
        """Delivers published messages in id order, once, filling gaps from the archive."""
        sequence, events = sub.sequence, []
        for prev, eid, raw in map(parse_published, messages):
            if sequence.gap_before(prev):
                events += sequence.accept(self._rooms.history(sub.room, sequence.last_id))
            events += sequence.accept([(eid, raw)])
        self._fan_out(sub, events)

    def _fan_out(self, sub, events):
        """One batch to every listener of the room: whole to those up to date,
        trimmed to what they lack for those catching up."""
        if not events:
            return
        batch = Batch(events)
        for transport, group in sub.current.items():
            delivered = 0
            for listener in group:
                delivered += listener.deliver(batch)
            FRAMES_DELIVERED.labels(transport).inc(delivered)
        for listener, catch_up in list(sub.joining.items()):
            fresh = catch_up.live(batch)
            if fresh is not None:
                FRAMES_DELIVERED.labels(listener.transport).inc(listener.deliver(fresh))
            self._promote(sub, listener, catch_up)

    def _promote(self, sub, listener, catch_up):
        """A listener that has caught up with the room gets whole batches from now on."""
        if catch_up.caught_up(sub.sequence.last_id) and sub.joining.get(listener) is catch_up:
            del sub.joining[listener]
            sub.current.setdefault(listener.transport, set()).add(listener)

    # --- keepalive -----------------------------------------------------------------

    def _ping_forever(self):
        """Pings every listener each interval (a WebSocket silent for a whole one is closed)."""
        while True:
            gevent.sleep(self._ping_interval)
            for listener in self.listeners():
                listener.ping()
