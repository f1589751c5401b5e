"""The connections to the shared store: Redis, or fakeredis in-process.

Two clients, both on the same store:
- `commands`: a blocking pool shared by every greenlet (a storm of clients
  waits for a connection instead of being refused), never retrying a
  command, so a post is sent once or fails with 503;
- `pubsub`: the hub's one subscriber connection, with no read timeout (an idle
  room is not an error) and TCP keepalive, so a dead Redis is noticed.
With no REDIS_URL both are fakeredis on one in-process server: the same code
path as Redis, for one process.
"""

import socket
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.retry import Retry

from .config import REDIS_POOL_SIZE, REDIS_POOL_WAIT, REDIS_TIMEOUT

# TCP keepalive for the pub/sub connection: a silent Redis is dropped in ~25 s.
_KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}


@dataclass
class Store:
    commands: redis.Redis
    pubsub: redis.Redis


def connect(redis_url):
    """Clients for REDIS_URL, or for a new in-process store when it is None."""
    if redis_url is None:
        import fakeredis

        server = fakeredis.FakeServer()
        client = fakeredis.FakeRedis(server=server)
        return Store(commands=client, pubsub=fakeredis.FakeRedis(server=server))
    pool = redis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=REDIS_POOL_WAIT,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    pubsub = redis.Redis.from_url(
        redis_url,
        socket_timeout=None,
        socket_connect_timeout=REDIS_TIMEOUT,
        socket_keepalive=True,
        socket_keepalive_options=_KEEPALIVE,
        retry=Retry(NoBackoff(), 0),
    )
    return Store(commands=redis.Redis(connection_pool=pool), pubsub=pubsub)
