"""Counters the worker updates and /metrics reads (plain attributes: one writer thread)."""

from __future__ import annotations

from typing import Any

__all__ = ["Metrics"]


class Metrics:
    __slots__ = (
        "prompt_tokens_total", "prompt_seconds_total", "tokens_predicted_total",
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

    def on_prompt_done(self, n_tokens: int, seconds: float) -> None:
        self.prompt_tokens_total += n_tokens
        self.prompt_seconds_total += seconds

    def on_request_done(self, n_predicted: int, seconds: float) -> None:
        self.tokens_predicted_total += n_predicted
        self.tokens_predicted_seconds_total += seconds

    def snapshot(self) -> dict[str, Any]:
        steps = self.steps_total or 1
        gen_steps = self.gen_steps_total or 1
        py_total = self.step_seconds_total - self.decode_seconds_total
        gen_py = self.gen_step_seconds_total - self.gen_decode_seconds_total
        bp_t, bp_s = self.prompt_tokens_total, self.prompt_seconds_total
        bg_t, bg_s = self.tokens_predicted_total, self.tokens_predicted_seconds_total
        return {
            "prompt_tokens_total": self.prompt_tokens_total,
            "prompt_seconds_total": self.prompt_seconds_total,
            "tokens_predicted_total": self.tokens_predicted_total,
            "tokens_predicted_seconds_total": self.tokens_predicted_seconds_total,
            "prompt_tokens_seconds": bp_t / bp_s if bp_s > 0 else 0.0,
            "predicted_tokens_seconds": bg_t / bg_s if bg_s > 0 else 0.0,
            "n_decode_total": self.n_decode_total,
            "n_busy_slots_per_decode": (self.n_busy_slots_total / self.n_decode_total
                                        if self.n_decode_total else 0.0),
            "requests_total": self.requests_total,
            "requests_cancelled": self.requests_cancelled,
            "requests_failed": self.requests_failed,
            "busy_slots_peak": self.busy_slots_peak,
            "steps_total": self.steps_total,
            "step_seconds_total": self.step_seconds_total,
            "decode_seconds_total": self.decode_seconds_total,
            "python_seconds_total": py_total,
            "sample_seconds_total": self.sample_seconds_total,
            "python_ms_per_step": 1000.0 * py_total / steps,
            "decode_ms_per_step": 1000.0 * self.decode_seconds_total / steps,
            "python_overhead_ratio": (py_total / self.step_seconds_total
                                      if self.step_seconds_total > 0 else 0.0),
            # steps that only generate (one token per busy slot, no prompt chunks): the
            # steady state whose overhead matters for throughput
            "gen_steps_total": self.gen_steps_total,
            "gen_tokens_total": self.gen_tokens_total,
            "gen_step_seconds_total": self.gen_step_seconds_total,
            "gen_decode_seconds_total": self.gen_decode_seconds_total,
            "gen_sample_seconds_total": self.gen_sample_seconds_total,
            "gen_python_ms_per_step": 1000.0 * gen_py / gen_steps,
            "gen_decode_ms_per_step": 1000.0 * self.gen_decode_seconds_total / gen_steps,
            # of the python time: inside the sampler chains (libllama samplers via cffi)
            "gen_sample_ms_per_step": 1000.0 * self.gen_sample_seconds_total / gen_steps,
            "gen_sample_us_per_token": (1e6 * self.gen_sample_seconds_total
                                        / self.gen_tokens_total if self.gen_tokens_total
                                        else 0.0),
            "gen_python_us_per_token": (1e6 * gen_py / self.gen_tokens_total
                                        if self.gen_tokens_total else 0.0),
            "gen_python_overhead_ratio": (gen_py / self.gen_step_seconds_total
                                          if self.gen_step_seconds_total > 0 else 0.0),
            "last_step_ms": 1000.0 * self.last_step_seconds,
            "last_decode_ms": 1000.0 * self.last_decode_seconds,
        }
