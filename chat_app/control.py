"""Requests to every process at once, over the hubs' control channel.

Every process's hub subscribes to one control channel, `P hub` (on a
cluster, a shard channel: SPUBLISH counts every subscriber, PUBLISH would
count only those of the node it reached). A request is
published there as JSON; each hub acts on it for its own listeners and
pushes its answer onto the reply list the request names, which the
requesting process reads until every receiver has answered or the wait ends.

    {"disconnect": [room, user], "reply": "<P>reply:<random>"}
        -> each hub closes user's WebSockets and streams in room; answers how many
"""

import json
import secrets
import time


from .config import CONTROL_REPLY_TTL, CONTROL_WAIT
from .exceptions import StoreUnavailable
from .metrics import REDIS_ERRORS
from .store import STORE_ERRORS


def disconnect_request(room, user, reply):
    return json.dumps({"disconnect": [room, user], "reply": reply})


def parse_request(data):
    """(room, user, reply key) of a disconnect request; None for anything else."""
    try:
        request = json.loads(data)
        room, user = request["disconnect"]
        reply = request["reply"]
    except (ValueError, KeyError, TypeError):
        return None
    if not all(isinstance(value, str) for value in (room, user, reply)):
        return None
    return room, user, reply


class Control:
    """The control channel's requests and answers, through the command connections."""

    def __init__(self, client, settings, cluster=False):
        self._redis = client
        self._prefix = settings.redis_prefix
        self._publish = "SPUBLISH" if cluster else "PUBLISH"
        self.channel = f"{settings.redis_prefix}hub"

    def disconnect(self, room, user):
        """Closes user's WebSockets and streams in room, in every process; how many.

        Waits up to CONTROL_WAIT for the processes' answers.
        """
        reply = f"{self._prefix}reply:{secrets.token_hex(8)}"
        try:
            receivers = self._redis.execute_command(
                self._publish, self.channel, disconnect_request(room, user, reply))
            return self._collect(reply, receivers)
        except STORE_ERRORS as exc:
            REDIS_ERRORS.inc()
            raise StoreUnavailable(str(exc)) from exc

    def _collect(self, reply, receivers):
        total, deadline = 0, time.monotonic() + CONTROL_WAIT
        for _ in range(receivers):
            left = deadline - time.monotonic()
            answer = self._redis.blpop([reply], timeout=max(left, 0.01)) if left > 0 else None
            if answer is None:
                break
            total += int(answer[1])
        return total

    def answer(self, reply, count):
        """Pushes this process's answer to a request (called in a greenlet of its own)."""
        try:
            pipe = self._redis.pipeline(transaction=False)
            pipe.rpush(reply, count)
            pipe.expire(reply, CONTROL_REPLY_TTL)
            pipe.execute()
        except STORE_ERRORS:
            REDIS_ERRORS.inc()
