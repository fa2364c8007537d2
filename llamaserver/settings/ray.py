"""Serving several replicas of the model on Ray Serve (``llamaserver.ray``)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field, model_validator

from ._fields import RAY, Group, cli

__all__ = ["RaySettings", "RAY_FIELDS"]


class RaySettings(Group):
    ray_replicas: int = Field(
        0, ge=0, le=4096, description="Serve N replicas of the model on Ray Serve, each a "
        "whole server with its own slots, behind one address (0: no Ray, one server).",
        json_schema_extra=cli("--ray-replicas", env="LLAMASERVER_RAY_REPLICAS", group=RAY,
                              metavar="N"))
    ray_min_replicas: int | None = Field(
        None, ge=0, le=4096, description="Autoscaling: the fewest replicas (default "
        "--ray-replicas). Replicas are added and removed to keep about --ray-target-queue "
        "requests on each.",
        json_schema_extra=cli("--ray-min-replicas", group=RAY, metavar="N"))
    ray_max_replicas: int | None = Field(
        None, ge=1, le=4096, description="Autoscaling: the most replicas (default "
        "--ray-replicas).",
        json_schema_extra=cli("--ray-max-replicas", group=RAY, metavar="N"))
    ray_target_queue: float = Field(
        2.0, gt=0, le=1e6, description="Autoscaling: the requests (running and waiting) per "
        "replica to aim for.",
        json_schema_extra=cli("--ray-target-queue", group=RAY, metavar="N"))
    ray_max_ongoing: int | None = Field(
        None, ge=1, le=1_000_000, description="Requests a replica is given at once before "
        "Ray holds further ones back (default: 4 x --parallel).",
        json_schema_extra=cli("--ray-max-ongoing", group=RAY, metavar="N"))
    ray_routing: Literal["prefix", "default"] = Field(
        "prefix", description="How a request picks its replica: 'prefix' (the replica most "
        "likely to hold its prompt's longest prefix; new prompts to the least loaded) or "
        "'default' (Ray Serve's power of two choices).",
        json_schema_extra=cli("--ray-routing", group=RAY, metavar="{prefix,default}"))
    ray_route_imbalance: int = Field(
        4, ge=0, le=1_000_000, description="Prefix routing gives way to the least loaded "
        "replica when the replica holding the prefix has this many more requests.",
        json_schema_extra=cli("--ray-route-imbalance", group=RAY, metavar="N"))
    ray_address: str | None = Field(
        None, description="The Ray cluster to join ('auto': the one this node belongs to, or "
        "ray://HOST:10001); default: start a local one.",
        json_schema_extra=cli("--ray-address", env="RAY_ADDRESS", group=RAY, metavar="ADDR"))
    ray_replica_cpus: float = Field(
        1.0, ge=0, le=4096, description="CPUs Ray reserves for each replica (its placement).",
        json_schema_extra=cli("--ray-replica-cpus", group=RAY, metavar="N"))

    @model_validator(mode="after")
    def _bounds(self) -> RaySettings:
        low = self.ray_min_replicas if self.ray_min_replicas is not None else self.ray_replicas
        high = self.ray_max_replicas if self.ray_max_replicas is not None else self.ray_replicas
        if (self.ray_min_replicas is not None or self.ray_max_replicas is not None) and low > high:
            raise ValueError(f"--ray-min-replicas ({low}) is more than --ray-max-replicas ({high})")
        return self


RAY_FIELDS = frozenset(RaySettings.model_fields)
