"""GET /metrics: Prometheus text format from a registry that belongs to one server.

The collector reads ``engine.metrics()`` at scrape time, so nothing is counted twice and no
process-wide registry is touched (two servers in one process export separately).
"""

from __future__ import annotations

from collections.abc import Iterator
from typing import TYPE_CHECKING, Any

from prometheus_client import CONTENT_TYPE_LATEST, generate_latest
from prometheus_client.core import CounterMetricFamily, GaugeMetricFamily
from prometheus_client.registry import Collector
from quart import Blueprint, Response

from ._errors import not_supported

if TYPE_CHECKING:
    from ._context import ApiContext

# (name without the "llamacpp:" prefix, kind, help, EngineMetrics field)
_METRICS = [
    ("prompt_tokens", "counter", "Number of prompt tokens processed, excluding cached tokens.",
     "prompt_tokens_total"),
    ("prompt_tokens_cached", "counter", "Number of prompt tokens reused from the cache.",
     "prompt_tokens_cached_total"),
    ("prompt_seconds", "counter", "Prompt process time.",
     "prompt_seconds_total"),
    ("tokens_predicted", "counter", "Number of generation tokens processed.",
     "tokens_predicted_total"),
    ("tokens_predicted_seconds", "counter", "Predict process time.",
     "tokens_predicted_seconds_total"),
    ("n_decode", "counter", "Number of llama_decode() calls.",
     "n_decode_total"),
    ("prompt_cache_hits", "counter", "Prompts that took a cached prefix from another slot or "
     "from host memory.", "prompt_cache_hits"),
    ("prompt_cache_tokens_reused", "counter", "Prompt tokens those prefixes saved evaluating.",
     "prompt_cache_tokens_reused"),
    ("prompt_cache_host_bytes", "gauge", "Host memory held by saved prompt prefixes.",
     "prompt_cache_host_bytes"),
    ("prompt_cache_host_entries", "gauge", "Prompt prefixes saved in host memory.",
     "prompt_cache_host_entries"),
    ("n_tokens_max", "gauge", "Largest observed sequence length (prompt + generation).",
     "n_tokens_max"),
    ("spec_decode_num_draft_tokens", "counter", "Speculative: draft tokens generated.",
     "spec_draft_tokens_total"),
    ("spec_decode_num_accepted_tokens", "counter", "Speculative: draft tokens accepted by the "
     "target model.", "spec_accepted_tokens_total"),
    ("spec_decode_num_drafts", "counter", "Speculative: verification steps.",
     "spec_drafts_total"),
    ("prompt_tokens_seconds", "gauge", "Average prompt throughput in tokens/s.",
     "prompt_tokens_seconds"),
    ("predicted_tokens_seconds", "gauge", "Average generation throughput in tokens/s.",
     "predicted_tokens_seconds"),
    ("kv_cache_usage_ratio", "gauge", "KV-cache usage. 1 means 100 percent usage.",
     "kv_cache_usage_ratio"),
    ("kv_cache_tokens", "gauge", "KV-cache tokens.", "kv_cache_tokens"),
    ("requests_processing", "gauge", "Number of requests processing.",
     "requests_processing"),
    ("requests_deferred", "gauge", "Number of requests deferred.", "requests_deferred"),
    ("n_busy_slots_per_decode", "gauge", "Average number of busy slots per llama_decode() "
     "call.", "n_busy_slots_per_decode"),
    # the engine's own accounting: what a step costs in Python beside the decode
    ("engine_steps", "counter", "Engine steps (one batch decode each).", "steps_total"),
    ("engine_step_seconds", "counter", "Wall time of engine steps, decode included.",
     "step_seconds_total"),
    ("engine_decode_seconds", "counter", "Time of engine steps spent inside llama_decode().",
     "decode_seconds_total"),
    ("engine_gen_step_seconds", "counter", "Wall time of generation-only steps (no prompt "
     "chunk), decode included.", "gen_step_seconds_total"),
    ("engine_gen_decode_seconds", "counter", "Time of generation-only steps spent inside "
     "llama_decode().", "gen_decode_seconds_total"),
    ("engine_gen_sample_seconds", "counter", "Time of generation-only steps spent in "
     "libllama's sampler chains.", "gen_sample_seconds_total"),
]


class EngineCollector(Collector):
    def __init__(self, ctx: "ApiContext") -> None:
        self._ctx = ctx

    def collect(self) -> Iterator[Any]:
        engine = self._ctx.engine
        values = engine.metrics() if (engine is not None and self._ctx.state == "ready") else None
        for name, kind, doc, field in _METRICS:
            family: Any
            if kind == "counter":
                family = CounterMetricFamily(f"llamacpp:{name}", doc)
            else:
                family = GaugeMetricFamily(f"llamacpp:{name}", doc)
            family.add_metric([], float(getattr(values, field)) if values is not None else 0.0)
            yield family


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.get("/metrics")
    async def metrics() -> Response:
        if not ctx.settings.endpoint_metrics:
            raise not_supported("This server does not support metrics endpoint. Start it "
                                "with `--metrics`")
        return Response(generate_latest(ctx.registry), status=200,
                        content_type=CONTENT_TYPE_LATEST,
                        headers={"Process-Start-Time-Unix": str(ctx.created)})
