"""Serving several replicas of the model on Ray Serve (``llamaserver.ray``)."""

from __future__ import annotations

from functools import partial
from typing import Literal

from pydantic import model_validator

from ._fields import RAY, Group, option

__all__ = ["RaySettings", "RAY_FIELDS"]

_opt = partial(option, group=RAY)


class RaySettings(Group):
    ray_replicas: int = _opt(
        "--ray-replicas", env="LLAMASERVER_RAY_REPLICAS", default=0, ge=0, le=4096, metavar="N")
    """Serve N replicas of the model on Ray Serve, each a whole server with its own slots, behind
    one address (0: no Ray, one server)."""
    ray_min_replicas: int | None = _opt(
        "--ray-min-replicas", default=None, ge=0, le=4096, metavar="N")
    """Autoscaling: the fewest replicas (default --ray-replicas). Replicas are added and removed to
    keep about --ray-target-queue requests on each."""
    ray_max_replicas: int | None = _opt(
        "--ray-max-replicas", default=None, ge=1, le=4096, metavar="N")
    """Autoscaling: the most replicas (default --ray-replicas)."""
    ray_target_queue: float = _opt("--ray-target-queue", default=2.0, gt=0, le=1e6, metavar="N")
    """Autoscaling: the requests (running and waiting) per replica to aim for."""
    ray_max_ongoing: int | None = _opt(
        "--ray-max-ongoing", default=None, ge=1, le=1_000_000, metavar="N")
    """Requests a replica is given at once before Ray holds further ones back (default: 4 x
    --parallel)."""
    ray_routing: Literal["prefix", "default"] = _opt(
        "--ray-routing", default="prefix", metavar="{prefix,default}")
    """How a request picks its replica: 'prefix' (the replica most likely to hold its prompt's
    longest prefix; new prompts to the least loaded) or 'default' (Ray Serve's power of two
    choices)."""
    ray_route_imbalance: int = _opt(
        "--ray-route-imbalance", default=4, ge=0, le=1_000_000, metavar="N")
    """Prefix routing gives way to the least loaded replica when the replica holding the prefix has
    this many more requests."""
    ray_address: str | None = _opt("--ray-address", env="RAY_ADDRESS", default=None, metavar="ADDR")
    """The Ray cluster to join ('auto': the one this node belongs to, or ray://HOST:10001); default:
    start a local one."""
    ray_replica_cpus: float = _opt("--ray-replica-cpus", default=1.0, ge=0, le=4096, metavar="N")
    """CPUs Ray reserves for each replica (its placement)."""

    @model_validator(mode="after")
    def _bounds(self) -> RaySettings:
        low = self.ray_min_replicas if self.ray_min_replicas is not None else self.ray_replicas
        high = self.ray_max_replicas if self.ray_max_replicas is not None else self.ray_replicas
        if (self.ray_min_replicas is not None or self.ray_max_replicas is not None) and low > high:
            raise ValueError(f"--ray-min-replicas ({low}) is more than --ray-max-replicas ({high})")
        return self


RAY_FIELDS = frozenset(RaySettings.model_fields)
