"""This process's hub: its one pub/sub connection, and each room's listeners.

A post runs the Lua script (room.py), which publishes "<prev> <id> <event>"
on the room's channel. The hub reads its one pub/sub connection, takes every
message already buffered (a batch), puts each room's messages in order with
the room's Sequence (sequence.py), backfilling from the archive when a prev
id shows a gap, and hands the room's Batch to each listener:

    listener.deliver(batch) -> events taken     (never blocks or yields)
    listener.ping()                             (every 0.9 CHAT_PING_INTERVAL)
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
    ID_CLOCK_SLACK,
    PUBSUB_BACKOFF_MAX,
    PUBSUB_BACKOFF_MIN,
    PUBSUB_PING_INTERVAL,
    PUBSUB_SILENCE,
    RECONNECT_WAIT,
    SUBSCRIBE_TIMEOUT,
)
from .control import parse_request
from .exceptions import ShuttingDown, StoreUnavailable
from .metrics import FRAMES_DELIVERED, HUB_ERRORS, REDIS_ERRORS
from .pubsub import Confirmations, read_batches, sort_replies
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

    def backfill_from(self):
        """The id after which this process may have missed the room's events
        while unsubscribed: the last it delivered or, before any, the oldest a
        listener has (None: no listener has read the archive yet)."""
        if self.sequence.last_id is not None:
            return self.sequence.last_id
        marks = [catch_up.mark for catch_up in self.joining.values() if catch_up.queue is None]
        return min(marks, default=None)

    def listeners(self):
        for group in list(self.current.values()):
            yield from list(group)
        yield from list(self.joining)


class Hub:
    """Owns this process's pub/sub connection; the only reader of it."""

    def __init__(self, rooms, pubsub_client, settings, control):
        self._rooms = rooms
        self._client = pubsub_client
        self._control = control   # requests from other processes: control.py
        self._ping_interval = settings.ping_interval
        self._fanout_interval = settings.fanout_interval
        self._subs = {}          # room -> Subscription
        self._by_channel = {}    # channel (bytes) -> Subscription
        self._lock = Semaphore()  # orders (un)subscribe commands like _subs changes
        self._conn = None         # the pub/sub connection, while it is up
        self._unconfirmed = Confirmations()  # SUBSCRIBEs sent on _conn, not yet confirmed
        self._heard_at = 0.0      # when _conn last gave a reply (time.monotonic())
        self._greenlets = []
        self._stopping = False
        self._failing = Event()   # set while the last connection attempt has failed
        self._retry_now = Event()  # ends the reconnect backoff early
        self.connected = Event()  # set while the pub/sub connection is up

    def start(self):
        if not self._greenlets:
            # Listeners are pinged a tenth early, so no stream's keepalives are
            # ever more than CHAT_PING_INTERVAL apart (and a silent WebSocket is
            # still closed within two intervals).
            self._greenlets = [gevent.spawn(self._read_forever),
                               gevent.spawn(self._supervised, self._ping_listeners,
                                            self._ping_interval * 0.9),
                               gevent.spawn(self._supervised, self._watch_connection,
                                            PUBSUB_PING_INTERVAL)]

    def up(self, timeout):
        """Whether this process's subscription is up; a hub still making its
        first connection is given up to timeout (one that failed is not)."""
        self.start()
        if not self.connected.is_set() and not self._failing.is_set():
            gevent.wait([self.connected, self._failing], count=1, timeout=timeout)
        return self.connected.is_set()

    def stop(self):
        """Stops the reader, the pinger and the connection's watchdog."""
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

    def close_user(self, room, user, code, reason):
        """Closes user's WebSockets and streams in room, in this process; how many."""
        sub = self._subs.get(room)
        if sub is None:
            return 0
        closing = [listener for listener in sub.listeners()
                   if listener.user == user and listener.transport != "longpolling"]
        for listener in closing:
            listener.close(code, reason)
        return len(closing)

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
                if self._command("SUBSCRIBE", sub.channel):
                    self._unconfirmed.sent(sub.channel.encode())
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

    def _command(self, name, *args):
        """Sends a command on the pub/sub connection; whether it was sent.

        If the connection is down, the reader resubscribes when it is back.
        """
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.send_command(name, *args)
        except (redis.RedisError, OSError) as exc:
            log.debug("%s %s failed: %s", name, args, exc)
            return False
        return True

    # --- the pub/sub reader -------------------------------------------------------

    def _read_forever(self):
        """The reader: whatever ends a connection (Redis going away, or a bug
        here) is followed by a new one, resubscribed and backfilled."""
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
            except Exception:
                HUB_ERRORS.inc()
                log.exception("the pub/sub reader failed; reconnecting")
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
                channels = [self._control.channel, *[s.channel for s in self._subs.values()]]
                conn.send_command("SUBSCRIBE", *channels)
                self._unconfirmed = Confirmations(channel.encode() for channel in channels)
                self._heard_at = time.monotonic()
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
        self._heard_at = time.monotonic()
        published, confirmed = sort_replies(replies)
        for channel in confirmed:
            if not self._unconfirmed.confirmed(channel):
                continue
            if channel == self._control.channel.encode():
                if self._failing.is_set():
                    log.warning("redis pub/sub connection re-established")
                self._failing.clear()
                self.connected.set()
            elif channel in self._by_channel:
                self._subscribed(self._by_channel[channel])
        for channel, messages in published.items():
            if channel == self._control.channel.encode():
                for data in messages:
                    self._on_control(data)
                continue
            sub = self._by_channel.get(channel)
            if sub is not None and sub.ready.is_set():
                self._receive(sub, messages)

    def _on_control(self, data):
        """A request published on the control channel: acted on, and answered."""
        request = parse_request(data)
        if request is None:
            log.warning("ignoring a malformed control message")
            return
        room, user, reply = request
        count = self.close_user(room, user, 1008, "disconnected by the server")
        gevent.spawn(self._control.answer, reply, count)

    def _subscribed(self, sub):
        """Redis confirmed a subscription: backfill what its listeners may have missed."""
        after = sub.backfill_from()
        if after is not None:
            self._fan_out(sub, sub.sequence.accept(self._rooms.history(sub.room, after)))
        sub.ready.set()

    def _receive(self, sub, messages):
        """Delivers published messages in id order, once, filling gaps from the archive."""
        sequence, events = sub.sequence, []
        newest_plausible = int((time.time() + ID_CLOCK_SLACK) * 1_000_000)
        for data in messages:
            try:
                prev, eid, raw = parse_published(data, newest_plausible)
            except ValueError:  # not from the post script: one bad message never stops a room
                HUB_ERRORS.inc()
                log.warning("ignoring a malformed message on %s", sub.channel)
                continue
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
            for listener in group:  # deliver never yields: the group cannot change meanwhile
                try:
                    delivered += listener.deliver(batch)
                except Exception:
                    self._failed(listener)
            FRAMES_DELIVERED.labels(transport).inc(delivered)
        for listener, catch_up in list(sub.joining.items()):
            fresh = catch_up.live(batch)
            if fresh is not None:
                try:
                    FRAMES_DELIVERED.labels(listener.transport).inc(listener.deliver(fresh))
                except Exception:
                    self._failed(listener)
            self._promote(sub, listener, catch_up)

    def _failed(self, listener):
        """A listener raised while handed a batch: it is closed, not the room."""
        HUB_ERRORS.inc()
        log.exception("a %s listener failed; closing it", listener.transport)
        listener.close(1011, "internal error")

    def _promote(self, sub, listener, catch_up):
        """A listener that has caught up with the room gets whole batches from now on."""
        if catch_up.caught_up(sub.sequence.last_id) and sub.joining.get(listener) is catch_up:
            del sub.joining[listener]
            sub.current.setdefault(listener.transport, set()).add(listener)

    # --- keepalive -----------------------------------------------------------------

    def _supervised(self, tick, interval):
        """Runs tick every interval; an error is logged and counted, and the next tick runs."""
        while True:
            gevent.sleep(interval)
            try:
                tick()
            except Exception:
                HUB_ERRORS.inc()
                log.exception("%s failed", tick.__name__)

    def _ping_listeners(self):
        """Pings every listener (a WebSocket silent for a whole interval is closed)."""
        for listener in self.listeners():
            listener.ping()

    def _watch_connection(self):
        """PINGs the pub/sub connection; one silent for PUBSUB_SILENCE (a stalled
        or partitioned Redis, a half-dead connection) is dropped, so the reader
        makes a new one, resubscribes and backfills."""
        if self._conn is None:
            return
        if time.monotonic() - self._heard_at > PUBSUB_SILENCE:
            REDIS_ERRORS.inc()
            log.warning("redis pub/sub connection silent for %.0f s; reconnecting", PUBSUB_SILENCE)
            self._close()
        else:
            self._command("PING")
