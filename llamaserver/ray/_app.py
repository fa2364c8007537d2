"""The Serve application: ``LlamaIngress`` -> ``LlamaReplica`` x N, and how to run it.

The replicas' deployment carries the routing (a custom ``RequestRouter`` through
``RequestRouterConfig``, or Ray Serve's default power-of-two-choices router) and the
autoscaling bounds (``autoscaling_config``: replicas are added while the ongoing requests
per replica stay above the target, removed while below).
"""

from __future__ import annotations

import signal
import time
from typing import Any

from ..settings import ServerSettings
from ..settings.ray import RAY_FIELDS

__all__ = ["build_app", "app_builder", "run", "APP_NAME"]

APP_NAME = "llamaserver"
# What a replica does not need: where the front door listens is the ingress's business.
_FRONT_DOOR = frozenset({"host", "port", "not_applied"}) | RAY_FIELDS


def replica_settings(settings: ServerSettings) -> dict[str, Any]:
    """The settings every replica's ``LlamaServer`` starts with (plain values: Ray ships them)."""
    return settings.model_dump(mode="json", exclude_unset=True, exclude=set(_FRONT_DOOR))


def _scaling(s: ServerSettings) -> dict[str, Any]:
    low = s.ray_min_replicas if s.ray_min_replicas is not None else s.ray_replicas
    high = s.ray_max_replicas if s.ray_max_replicas is not None else s.ray_replicas
    if low == high:
        return {"num_replicas": max(1, low)}
    return {"autoscaling_config": {"min_replicas": low, "max_replicas": high,
                                   "initial_replicas": max(low, min(high, s.ray_replicas or low)),
                                   "target_ongoing_requests": s.ray_target_queue}}


def _router(s: ServerSettings) -> Any:
    from ray.serve.config import RequestRouterConfig

    if s.ray_routing == "default":
        return RequestRouterConfig()   # Ray Serve's PowerOfTwoChoicesRequestRouter
    from ._router import ROUTER_PATH

    return RequestRouterConfig(request_router_class=ROUTER_PATH,
                               request_router_kwargs={"imbalance": s.ray_route_imbalance},
                               # queue lengths are probed, and cached for this long
                               request_routing_stats_period_s=1.0)


def build_app(settings: ServerSettings) -> Any:
    """The Serve application for ``settings`` (``serve.run(build_app(...))``)."""
    from ray import serve

    from ._ingress import Ingress
    from ._replica import LlamaReplica

    s = settings
    replica = serve.deployment(
        LlamaReplica, name="LlamaReplica",
        ray_actor_options={"num_cpus": s.ray_replica_cpus},
        max_ongoing_requests=s.ray_max_ongoing or 4 * s.parallel,
        request_router_config=_router(s),
        # a model takes a while to load; a failed engine fails the check (Ray restarts it)
        health_check_period_s=5, health_check_timeout_s=60, graceful_shutdown_timeout_s=10,
        **_scaling(s))
    ingress = serve.deployment(Ingress, name="LlamaIngress", ray_actor_options={"num_cpus": 0},
                               max_ongoing_requests=10_000)
    return ingress.bind(replica.bind(replica_settings(s)))


def app_builder(args: dict[str, Any]) -> Any:
    """For a Serve config file: ``import_path: llamaserver.ray:app_builder`` with ``args``
    holding settings by field name (``{"model": "m.gguf", "parallel": 4, "ray_replicas": 2}``)."""
    return build_app(ServerSettings.model_validate(args))


def _exit_on_sigterm(signum: int, frame: Any) -> None:
    raise SystemExit(0)


def run(settings: ServerSettings, *, block: bool = True) -> None:
    """Start (or join, ``--ray-address``) a Ray cluster and serve on ``--host``/``--port``."""
    import ray
    from ray import serve

    # SIGTERM ends the process through its normal exit: Serve is shut down below, and the
    # local cluster that ray.init started goes with its driver (an atexit hook of Ray's).
    signal.signal(signal.SIGTERM, _exit_on_sigterm)
    if not ray.is_initialized():
        ray.init(address=settings.ray_address, include_dashboard=False)
    host = settings.hosts[0]
    serve.start(http_options={"host": host, "port": settings.port})
    serve.run(build_app(settings), name=APP_NAME, route_prefix="/")
    print(f"llamaserver: replicas on Ray Serve at http://{host}:{settings.port}", flush=True)
    try:
        while block:
            time.sleep(3600)
    finally:
        if block:
            serve.shutdown()
