"""The pub/sub connections below the hub: one per Redis node it listens on
(Link), their replies read in batches and sorted, and the SUBSCRIBEs still
in flight counted. The hub (hub.py) decides which channels each carries.
"""

import fcntl
import logging
import termios
import time
from array import array
from collections import Counter

import gevent
import redis
from gevent.event import Event

from .config import (
    PUBSUB_BACKOFF_MAX,
    PUBSUB_BACKOFF_MIN,
    PUBSUB_BATCH_MAX,
    PUBSUB_SILENCE,
)
from .exceptions import StoreUnavailable
from .metrics import HUB_ERRORS, REDIS_ERRORS
from .store import STORE_ERRORS

log = logging.getLogger(__name__)


class Confirmations:
    """SUBSCRIBEs sent on one connection and not yet confirmed, by channel.

    Redis confirms each SUBSCRIBE in order. A room left and joined again
    quickly has two in flight (SUBSCRIBE, UNSUBSCRIBE, SUBSCRIBE): only the
    last confirmation means its new subscription has taken effect.
    """

    def __init__(self, channels=()):
        self._waiting = Counter(channels)

    def sent(self, channel):
        self._waiting[channel] += 1

    def confirmed(self, channel):
        """Records a confirmation; whether the channel's latest SUBSCRIBE is now in effect."""
        self._waiting[channel] -= 1
        if self._waiting[channel] > 0:
            return False
        del self._waiting[channel]
        return True


def sort_replies(replies):
    """Pub/sub replies as ({channel: [published data]}, [channels confirmed],
    [shard channels dropped]).

    Redis sends [b"message", channel, data] and [b"subscribe", channel, n]; a
    cluster's shard sends smessage and ssubscribe, and sunsubscribe, also
    unasked when a channel's slot moves away. Anything else it may push on the
    connection (PONG, the answers to UNSUBSCRIBE) is ignored.
    """
    published, confirmed, dropped = {}, [], []
    for reply in replies:
        if not isinstance(reply, list) or len(reply) != 3:
            continue
        kind, channel, data = reply
        if kind in (b"message", b"smessage"):
            published.setdefault(channel, []).append(data)
        elif kind in (b"subscribe", b"ssubscribe"):
            confirmed.append(channel)
        elif kind == b"sunsubscribe":
            dropped.append(channel)
    return published, confirmed, dropped


def read_batches(conn, interval, heard):
    """Yields the replies on a pub/sub connection, a batch at a time.

    A batch is every reply already buffered. Batches are at least `interval`
    apart: what arrives sooner waits in the socket for the rest of the
    interval, so a busy room costs one write per listener per interval, not
    per message. The rest of a batch, after its first reply, is read without
    yielding to the event loop while bytes wait in the socket; when none do,
    redis-py's can_read polls through gevent, a turn of the loop (which a
    busy process cannot spare for every reply), and the batch goes on if
    more came meanwhile. heard() is called as each reply is read: in a busy
    process one batch can span many long turns, in any of which the
    watchdog may look.
    """
    def reply():  # RESP3 (redis-py's default) sends pub/sub messages as pushes
        return conn.read_response(disconnect_on_error=False, push_request=True)

    def more():  # bytes wait in the socket, or a reply in redis-py's buffer
        return waiting_bytes(conn) > 0 or conn.can_read(timeout=0)

    last = 0.0
    while True:
        wait = last + interval - time.monotonic()
        if wait > 0:
            gevent.sleep(wait)
        batch = [reply()]
        heard()
        last = time.monotonic()
        while len(batch) < PUBSUB_BATCH_MAX and more():
            batch.append(reply())
            heard()
        yield batch


def waiting_bytes(conn):
    """Bytes from Redis waiting unread in a redis-py connection's socket (0
    when it has none, or is not a kernel socket: fakeredis)."""
    sock = getattr(conn, "_sock", None)
    try:
        return 0 if sock is None else unread_bytes(sock)
    except OSError:
        return 0


def unread_bytes(sock):
    """Bytes waiting in a socket's receive queue (FIONREAD), left there unread."""
    count = array("i", [0])
    fcntl.ioctl(sock.fileno(), termios.FIONREAD, count, True)
    return count[0]


class Link:
    """One pub/sub connection to one Redis node (the one Redis, or a cluster's
    master) and the channels the hub wants on it.

    Its reader is the only reader of the connection; commands go out with the
    hub's lock held, in the order the hub decided them. Whatever ends a
    connection (Redis going away, a bug in a listener) is followed, after a
    backoff, by a new one subscribed to every channel still wanted; a link
    left with no channel ends.
    """

    def __init__(self, node, nodes, hub, lock):
        self.node = node
        self.channels = set()       # channel names wanted on this node
        self.connected = Event()    # set while the connection is up (a SUBSCRIBE confirmed)
        self.failing = Event()      # set while the last connection attempt has failed
        self.retry_now = Event()    # ends the reconnect backoff early
        self.heard_at = 0.0         # when the connection last gave a reply (time.monotonic())
        self.asked_at = 0.0         # when the first PING since that reply went out
        self.dispatching = False    # the reader is handing a batch to the hub
        self._nodes = nodes
        self._client = nodes.client(node)
        self._prefix = "S" if nodes.sharded else ""   # SSUBSCRIBE on a cluster's shard
        self._hub = hub
        self._lock = lock
        self._conn = None
        self._unconfirmed = Confirmations()  # SUBSCRIBEs sent on _conn, not yet confirmed
        self._leaving = Counter()   # our SUNSUBSCRIBEs on _conn whose answer has not come back
        self._greenlet = gevent.spawn(self._read_forever)

    def add(self, channel):
        """Wants channel here; subscribes now if the connection is up, else on the next."""
        self.channels.add(channel)
        if self.send(self._prefix + "SUBSCRIBE", channel):
            self._unconfirmed.sent(channel.encode())

    def remove(self, channel):
        """No longer wants channel here, and unsubscribes."""
        self.channels.discard(channel)
        if self.send(self._prefix + "UNSUBSCRIBE", channel) and self._prefix:
            self._leaving[channel.encode()] += 1  # a shard's answer: told apart from a move

    def moved_away(self, channel):
        """Whether a shard's sunsubscribe of channel was its own (the slot
        moved), not the answer to a SUNSUBSCRIBE of ours."""
        if self._leaving[channel] > 0:
            self._leaving[channel] -= 1
            return False
        return True

    def drop(self, channel):
        """Forgets channel, with no command: its node is gone or no longer owns it."""
        self.channels.discard(channel)

    def confirmed(self, channel):
        """Records a confirmation: whether the channel's latest SUBSCRIBE is now in effect.
        The connection is up from the first."""
        if self.failing.is_set():
            log.warning("redis pub/sub connection re-established (%s)", self.node)
        self.failing.clear()
        self.connected.set()
        return self._unconfirmed.confirmed(channel)

    def send(self, name, *args):
        """Sends a command on the connection; whether it was sent (if the
        connection is down, the next one subscribes to every channel wanted)."""
        conn = self._conn
        if conn is None:
            return False
        try:
            conn.send_command(name, *args)
        except (redis.RedisError, OSError) as exc:
            log.debug("%s %s failed: %s", name, args, exc)
            return False
        return True

    def watch(self):
        """PINGs the connection; one that has left a PING unanswered for
        PUBSUB_SILENCE (a stalled or partitioned Redis, a half-dead connection)
        is dropped, so the reader makes a new one, resubscribes and backfills.
        Silence is counted from the first PING since the last reply, so a
        process that was itself held up (a long collection, a starved CPU)
        asks again before it judges. Nor is it silence while the reader hands
        a batch out (a busy process can take seconds over a big one, with
        replies already in redis-py's buffer) or while replies wait unread:
        Redis answered, and this process has not read them yet (reconnecting
        would only add to its work)."""
        if self._conn is None:
            return
        now = time.monotonic()
        if self.asked_at <= self.heard_at:  # every PING so far was answered
            self.asked_at = now
        elif now - self.asked_at > PUBSUB_SILENCE and not self.dispatching and \
                not waiting_bytes(self._conn):
            REDIS_ERRORS.inc()
            log.warning("redis pub/sub connection silent for %.0f s (%s); reconnecting",
                        PUBSUB_SILENCE, self.node)
            self._close()
            return
        self.send("PING")

    def _heard(self):
        self.heard_at = time.monotonic()

    def stop(self):
        self._greenlet.kill()
        self._close()

    def _read_forever(self):
        backoff = PUBSUB_BACKOFF_MIN
        while True:
            try:
                conn = self._open()
                backoff = PUBSUB_BACKOFF_MIN
                for batch in read_batches(conn, self._hub.fanout_interval, self._heard):
                    self.dispatching = True
                    try:
                        self._hub.dispatch(self, batch)
                    finally:
                        self.dispatching = False
            except redis.exceptions.MovedError as exc:  # a SSUBSCRIBE sent where the slot was
                log.info("a channel's slot moved to %s:%s; following it", exc.host, exc.port)
            except (*STORE_ERRORS, OSError, StoreUnavailable) as exc:
                REDIS_ERRORS.inc()
                if not self.failing.is_set():
                    log.warning("redis pub/sub connection lost: %s (%s); reconnecting",
                                exc, self.node)
            except Exception:
                HUB_ERRORS.inc()
                log.exception("the pub/sub reader failed; reconnecting")
            self.failing.set()
            self._close()
            if not self._hub.lost(self):  # every channel went to another node
                return
            self.retry_now.clear()
            gevent.sleep(PUBSUB_BACKOFF_MIN)
            self.retry_now.wait(backoff - PUBSUB_BACKOFF_MIN)  # a listener may cut it short
            backoff = min(backoff * 2, PUBSUB_BACKOFF_MAX)

    def _open(self):
        """A new connection, subscribed to every channel wanted here.

        The hub speaks SUBSCRIBE on a plain redis-py connection rather than
        through redis-py's PubSub: it keeps its own list of subscriptions, and
        reading replies straight off the connection costs half as much.
        """
        pool = self._client.connection_pool
        conn = pool.get_connection()
        try:
            self._nodes.verify(conn)
            with self._lock:
                channels = sorted(self.channels)
                if self._prefix:  # a shard takes one slot per SSUBSCRIBE
                    commands = [("SSUBSCRIBE", channel) for channel in channels]
                else:
                    commands = [("SUBSCRIBE", *channels)] if channels else []
                if commands:
                    conn.send_packed_command(conn.pack_commands(commands))
                self._unconfirmed = Confirmations(channel.encode() for channel in channels)
                self._leaving = Counter()
                self.heard_at = time.monotonic()
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
            self._hub.unready(self)
        if conn is not None:
            conn.disconnect()
            self._client.connection_pool.release(conn)
