"""Prefix-aware routing, as a Ray Serve custom request router (``ray.serve.request_router``).

Ray Serve calls ``choose_replicas`` for each request with the running replicas and the
pending request (whose first argument is the ingress's ``RoutingKey``), and takes the
replicas it returns rank by rank: within a rank it probes queue lengths and picks the least
loaded replica that has room (``max_ongoing_requests``), else it tries the next rank.  The
decision itself is ``_policy.decide``; requests without a key (``/tokenize``, ``/health``, ...)
go to the least loaded replica.

The index lives in this router object, one per process that holds a handle to the model
deployment (the ingress replica): with several ingress replicas each keeps its own guess.
"""

from __future__ import annotations

from collections import Counter
from typing import Any

from ray.serve.request_router import PendingRequest, ReplicaID, RequestRouter, RunningReplica

from ._policy import decide
from ._prefix_index import PrefixIndex
from ._routing_key import RoutingKey

__all__ = ["PrefixAffinityRouter"]

ROUTER_PATH = "llamaserver.ray._router:PrefixAffinityRouter"


def _key(pending: PendingRequest | None) -> RoutingKey | None:
    if pending is None or not pending.args:
        return None
    key = pending.args[0]
    return key if isinstance(key, RoutingKey) else None


class PrefixAffinityRouter(RequestRouter):
    def initialize_state(self, imbalance: int = 4, max_entries: int = 200_000,
                         **_: Any) -> None:
        """``request_router_kwargs`` of the deployment: ``imbalance`` (ongoing requests
        above the least loaded replica before affinity gives way), ``max_entries``."""
        self.imbalance = imbalance
        self.index = PrefixIndex(max_entries)
        self.started: Counter[str] = Counter()   # new prefixes sent to each replica
        self._new: set[str] = set()              # internal ids of requests routed as new
        self._by_id: dict[str, RunningReplica] = {}

    def _load(self, replica_id: str) -> int:
        replica = self._by_id.get(replica_id)
        return (self.replica_queue_len_cache.get(replica.replica_id) or 0) if replica else 0

    async def choose_replicas(self, candidate_replicas: list[RunningReplica],
                              pending_request: PendingRequest | None = None
                              ) -> list[list[RunningReplica]]:
        if pending_request is not None:
            # Every replica is in the ranks below: when all are full, wait and try again.
            pending_request.routing_context.should_backoff = True
        key = _key(pending_request) or RoutingKey()
        candidates = list(candidate_replicas)
        if key.avoid:
            # a retry: not the replica that just failed it, while there is any other
            candidates = [r for r in candidates if r.replica_id.unique_id not in key.avoid] or candidates
        if not candidates:
            return []
        self._by_id = {r.replica_id.unique_id: r for r in candidates}
        decision = decide(key, list(self._by_id), self._load, self.index, self.started,
                          self.imbalance)
        if decision.new and pending_request is not None:
            if len(self._new) > 10_000:   # ids of requests cancelled before being routed
                self._new.clear()
            self._new.add(pending_request.metadata.internal_request_id)
        return [[self._by_id[r] for r in rank] for rank in decision.ranks if rank]

    def on_request_routed(self, pending_request: PendingRequest, replica_id: ReplicaID,
                          result: Any) -> None:
        key = _key(pending_request)
        if key is None or not key.blocks:
            return
        replica = replica_id.unique_id
        if pending_request.metadata.internal_request_id in self._new:
            self._new.discard(pending_request.metadata.internal_request_id)
            self.started[replica] += 1
        self.index.record(key.blocks, replica)

    def on_replica_actor_died(self, replica_id: ReplicaID) -> None:
        super().on_replica_actor_died(replica_id)
        self.index.forget([replica_id.unique_id])
        self.started.pop(replica_id.unique_id, None)

    def update_replicas(self, replicas: list[RunningReplica]) -> None:
        before = {r.unique_id for r in self.curr_replicas}
        super().update_replicas(replicas)
        gone = before - {r.unique_id for r in self.curr_replicas}
        if gone:
            self.index.forget(gone)
