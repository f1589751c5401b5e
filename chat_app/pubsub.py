"""The pub/sub connection's replies, below the hub: reading them in batches,
sorting them, and counting the SUBSCRIBEs still in flight. No state but the
connection it is given; the hub (hub.py) owns the connection.
"""

import time
from collections import Counter

import gevent

from .config import PUBSUB_BATCH_MAX


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
