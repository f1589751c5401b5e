"""The connections to the shared store: one Redis, a Redis Cluster, or
fakeredis in-process.

- `commands`: a blocking pool (per node, on a cluster) shared by every
  greenlet (a storm of clients waits for a connection instead of being
  refused), never retrying a command that may have run, so a post is sent
  once or fails with 503. On a cluster, redis-py's RedisCluster routes each
  command to the master of its slot and follows MOVED, ASK and TRYAGAIN
  (answers to a command that did not run).
- `nodes`: where the hub's pub/sub connections go (Nodes): the one Redis, or
  the master of each channel's slot.
With no REDIS_URL both are fakeredis on one in-process server: the same code
path as Redis, for one process.

Whether REDIS_URL names a cluster node is asked once, at start (`INFO
cluster`). A Redis that does not answer then is taken for a single one; the
hub checks again on its first connection (`Nodes.verify`).
"""

import logging
import os
import signal
import socket
from dataclasses import dataclass

import redis
from redis.backoff import NoBackoff
from redis.cluster import RedisCluster
from redis.connection import parse_url
from redis.retry import Retry

from .config import CLUSTER_REFRESH_INTERVAL, REDIS_POOL_SIZE, REDIS_POOL_WAIT, REDIS_TIMEOUT
from .exceptions import StoreUnavailable

log = logging.getLogger(__name__)

# What a command may raise: redis-py's errors, and RedisCluster's own when no
# node answers or a slot has no master.
STORE_ERRORS = (redis.RedisError, redis.exceptions.RedisClusterException)

# TCP keepalive for the pub/sub connections: a silent Redis is dropped in ~25 s.
_KEEPALIVE = {
    getattr(socket, name): value
    for name, value in (("TCP_KEEPIDLE", 10), ("TCP_KEEPINTVL", 5), ("TCP_KEEPCNT", 3))
    if hasattr(socket, name)
}

# A pub/sub connection: no read timeout (an idle room is not an error), keepalive.
_PUBSUB_OPTIONS = dict(socket_timeout=None, socket_connect_timeout=REDIS_TIMEOUT,
                       socket_keepalive=True, socket_keepalive_options=_KEEPALIVE,
                       retry=Retry(NoBackoff(), 0))


class Nodes:
    """The Redis nodes the hub subscribes on: the one Redis, or a cluster's
    masters, each channel on the master that owns its slot (sharded pub/sub)."""

    def __init__(self, pubsub_client, cluster=None, url=None, verified=True):
        self._single = pubsub_client  # the one Redis (None on a cluster)
        self._cluster = cluster       # the cluster's RedisCluster (None on one Redis)
        self._url = url               # the cluster's REDIS_URL: its password and TLS options
        self._clients = {}            # node name -> redis.Redis for pub/sub
        self.sharded = cluster is not None
        self.verified = verified      # False: whether it is a cluster was not known at start

    def node_for(self, channel):
        """The name of the node that carries channel's messages now; raises
        StoreUnavailable if no master is known for its slot."""
        if self._cluster is None:
            return "redis"
        try:
            slot = self._cluster.keyslot(channel)
            return self._cluster.nodes_manager.get_node_from_slot(slot).name
        except STORE_ERRORS as exc:
            raise StoreUnavailable(str(exc)) from exc

    def client(self, node):
        """A client for pub/sub connections to node (by name)."""
        if self._cluster is None:
            return self._single
        if node not in self._clients:
            host, port = node.rsplit(":", 1)
            options = {**parse_url(self._url), "host": host, "port": int(port), **_PUBSUB_OPTIONS}
            self._clients[node] = redis.Redis(connection_pool=redis.ConnectionPool(**options))
        return self._clients[node]

    def verify(self, conn):
        """On a pub/sub connection just made: if the Redis taken for a single one
        at start turns out to be a cluster node, this worker stops (SIGTERM) and
        gunicorn starts another, which asks again."""
        if self.verified:
            return
        conn.send_command("INFO", "cluster")
        if "cluster_enabled:1" in str(conn.read_response()):
            log.error("REDIS_URL names a Redis Cluster node, found only now: restarting this worker")
            os.kill(os.getpid(), signal.SIGTERM)
        self.verified = True

    def refresh(self):
        """Reads the cluster's slots again (after a failover or a slot move)."""
        if self._cluster is not None:
            self._cluster.nodes_manager.initialize()


def is_cluster(client):
    """Whether client's node has cluster mode enabled; raises RedisError if it does not answer."""
    return bool(client.info("cluster").get("cluster_enabled"))


@dataclass
class Store:
    commands: redis.Redis | RedisCluster
    nodes: Nodes

    @property
    def cluster(self):
        return self.nodes.sharded


def connect(redis_url):
    """Clients for REDIS_URL, or for a new in-process store when it is None."""
    if redis_url is None:
        import fakeredis

        server = fakeredis.FakeServer()
        client = fakeredis.FakeRedis(server=server)
        return Store(commands=client, nodes=Nodes(fakeredis.FakeRedis(server=server)))
    probe = redis.Redis.from_url(redis_url, socket_timeout=REDIS_TIMEOUT,
                                 socket_connect_timeout=REDIS_TIMEOUT)
    try:
        cluster = is_cluster(probe)
        verified = True
    except redis.RedisError as exc:
        log.warning("redis at start did not answer (%s): taken for a single Redis "
                    "until it does", exc)
        cluster, verified = False, False
    finally:
        probe.close()
    if cluster:
        return _cluster_store(redis_url)
    pool = redis.BlockingConnectionPool.from_url(
        redis_url,
        max_connections=REDIS_POOL_SIZE,
        timeout=REDIS_POOL_WAIT,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),
    )
    pubsub = redis.Redis.from_url(redis_url, **_PUBSUB_OPTIONS)
    return Store(commands=redis.Redis(connection_pool=pool),
                 nodes=Nodes(pubsub, verified=verified))


def _cluster_store(redis_url):
    commands = RedisCluster.from_url(
        redis_url,
        connection_pool_class=redis.BlockingConnectionPool,
        max_connections=REDIS_POOL_SIZE,
        timeout=REDIS_POOL_WAIT,
        socket_timeout=REDIS_TIMEOUT,
        socket_connect_timeout=REDIS_TIMEOUT,
        retry=Retry(NoBackoff(), 0),  # a post that may have run is never sent twice
        topology_refresh_min_interval=CLUSTER_REFRESH_INTERVAL,
    )
    return Store(commands=commands, nodes=Nodes(None, cluster=commands, url=redis_url))
