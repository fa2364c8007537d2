"""Counters the worker updates (plain attributes: one writer thread) and what /metrics reads."""

from __future__ import annotations

from dataclasses import dataclass

__all__ = ["Metrics", "EngineMetrics"]


@dataclass(frozen=True, slots=True)
class EngineMetrics:
    """A snapshot of the engine's counters (names as llama-server's where it has them).

    ``python_*`` and ``gen_python_*`` measure the engine's own time per step (batch building,
    sampling, events) next to the time spent in ``llama_decode``; ``gen_*`` cover the steps
    that only generate (no prompt chunk), whose overhead sets the throughput.
    """

    prompt_tokens_total: int
    prompt_tokens_cached_total: int
    prompt_seconds_total: float
    tokens_predicted_total: int
    tokens_predicted_seconds_total: float
    prompt_tokens_seconds: float
    predicted_tokens_seconds: float
    n_decode_total: int
    n_busy_slots_per_decode: float
    requests_total: int
    requests_cancelled: int
    requests_failed: int
    busy_slots_peak: int
    steps_total: int
    step_seconds_total: float
    decode_seconds_total: float
    python_seconds_total: float
    sample_seconds_total: float
    python_ms_per_step: float
    decode_ms_per_step: float
    python_overhead_ratio: float
    gen_steps_total: int
    gen_tokens_total: int
    gen_step_seconds_total: float
    gen_decode_seconds_total: float
    gen_sample_seconds_total: float
    gen_python_ms_per_step: float
    gen_decode_ms_per_step: float
    gen_sample_ms_per_step: float
    gen_sample_us_per_token: float
    gen_python_us_per_token: float
    gen_python_overhead_ratio: float
    last_step_ms: float
    last_decode_ms: float
    n_tokens_max: int                 # the longest sequence seen (prompt and generation)
    spec_draft_tokens_total: int      # speculative decoding: drafted, accepted, verified
    spec_accepted_tokens_total: int
    spec_drafts_total: int
    # the engine's state at the snapshot
    requests_processing: int
    requests_deferred: int
    kv_cache_tokens: int
    kv_cache_usage_ratio: float
    n_ctx: int
    n_slots: int
    # the prefix cache across slots and host memory
    prompt_cache_hits: int
    prompt_cache_tokens_reused: int
    prompt_cache_host_bytes: int
    prompt_cache_host_entries: int


class Metrics:
    __slots__ = (
        "prompt_tokens_total", "prompt_tokens_cached_total", "prompt_seconds_total",
        "tokens_predicted_total", "n_tokens_max", "spec_draft_tokens_total",
        "spec_accepted_tokens_total", "spec_drafts_total",
        "tokens_predicted_seconds_total", "n_decode_total", "n_busy_slots_total",
        "requests_total", "requests_cancelled", "requests_failed", "steps_total",
        "step_seconds_total", "decode_seconds_total", "gen_steps_total",
        "gen_step_seconds_total", "gen_decode_seconds_total", "gen_tokens_total",
        "sample_seconds_total", "gen_sample_seconds_total",
        "last_step_seconds", "last_decode_seconds", "busy_slots_peak",
    )

    def __init__(self) -> None:
        for name in self.__slots__:
            setattr(self, name, 0)
        for name in ("prompt_seconds_total", "tokens_predicted_seconds_total",
                     "step_seconds_total", "decode_seconds_total", "gen_step_seconds_total",
                     "gen_decode_seconds_total", "last_step_seconds", "last_decode_seconds",
                     "sample_seconds_total", "gen_sample_seconds_total"):
            setattr(self, name, 0.0)

    def on_prompt_done(self, n_tokens: int, seconds: float, n_cached: int = 0) -> None:
        self.prompt_tokens_total += n_tokens
        self.prompt_tokens_cached_total += n_cached
        self.prompt_seconds_total += seconds

    def on_request_done(self, n_predicted: int, seconds: float) -> None:
        self.tokens_predicted_total += n_predicted
        self.tokens_predicted_seconds_total += seconds

    def on_step(self, step_s: float, decode_s: float, sample_s: float, n_gen: int,
                n_prompt: int) -> None:
        self.steps_total += 1
        self.step_seconds_total += step_s
        self.decode_seconds_total += decode_s
        self.sample_seconds_total += sample_s
        self.last_step_seconds = step_s
        self.last_decode_seconds = decode_s
        if n_prompt == 0:
            self.gen_steps_total += 1
            self.gen_tokens_total += n_gen
            self.gen_step_seconds_total += step_s
            self.gen_decode_seconds_total += decode_s
            self.gen_sample_seconds_total += sample_s

    def snapshot(self, **state: int | float) -> EngineMetrics:
        steps = self.steps_total or 1
        gen_steps = self.gen_steps_total or 1
        gen_tokens = self.gen_tokens_total
        py_total = self.step_seconds_total - self.decode_seconds_total
        gen_py = self.gen_step_seconds_total - self.gen_decode_seconds_total
        bp_t, bp_s = self.prompt_tokens_total, self.prompt_seconds_total
        bg_t, bg_s = self.tokens_predicted_total, self.tokens_predicted_seconds_total
        return EngineMetrics(
            prompt_tokens_total=bp_t, prompt_tokens_cached_total=self.prompt_tokens_cached_total,
            prompt_seconds_total=bp_s,
            tokens_predicted_total=bg_t, tokens_predicted_seconds_total=bg_s,
            prompt_tokens_seconds=bp_t / bp_s if bp_s > 0 else 0.0,
            predicted_tokens_seconds=bg_t / bg_s if bg_s > 0 else 0.0,
            n_decode_total=self.n_decode_total,
            n_busy_slots_per_decode=(self.n_busy_slots_total / self.n_decode_total
                                     if self.n_decode_total else 0.0),
            requests_total=self.requests_total, requests_cancelled=self.requests_cancelled,
            requests_failed=self.requests_failed, busy_slots_peak=self.busy_slots_peak,
            steps_total=self.steps_total, step_seconds_total=self.step_seconds_total,
            decode_seconds_total=self.decode_seconds_total, python_seconds_total=py_total,
            sample_seconds_total=self.sample_seconds_total,
            python_ms_per_step=1000.0 * py_total / steps,
            decode_ms_per_step=1000.0 * self.decode_seconds_total / steps,
            python_overhead_ratio=(py_total / self.step_seconds_total
                                   if self.step_seconds_total > 0 else 0.0),
            gen_steps_total=self.gen_steps_total, gen_tokens_total=gen_tokens,
            gen_step_seconds_total=self.gen_step_seconds_total,
            gen_decode_seconds_total=self.gen_decode_seconds_total,
            gen_sample_seconds_total=self.gen_sample_seconds_total,
            gen_python_ms_per_step=1000.0 * gen_py / gen_steps,
            gen_decode_ms_per_step=1000.0 * self.gen_decode_seconds_total / gen_steps,
            gen_sample_ms_per_step=1000.0 * self.gen_sample_seconds_total / gen_steps,
            gen_sample_us_per_token=(1e6 * self.gen_sample_seconds_total / gen_tokens
                                     if gen_tokens else 0.0),
            gen_python_us_per_token=1e6 * gen_py / gen_tokens if gen_tokens else 0.0,
            gen_python_overhead_ratio=(gen_py / self.gen_step_seconds_total
                                       if self.gen_step_seconds_total > 0 else 0.0),
            last_step_ms=1000.0 * self.last_step_seconds,
            last_decode_ms=1000.0 * self.last_decode_seconds,
            n_tokens_max=self.n_tokens_max,
            spec_draft_tokens_total=self.spec_draft_tokens_total,
            spec_accepted_tokens_total=self.spec_accepted_tokens_total,
            spec_drafts_total=self.spec_drafts_total,
            **state,  # type: ignore[arg-type]
        )
