"""One slot: a sequence of the shared context and the request it is serving."""

from __future__ import annotations

import time
from typing import TYPE_CHECKING, Any

from ._stop import StopMatcher
from .types import FinalEvent

if TYPE_CHECKING:
    from llama_ffi import SamplerChain, TokenDecoder

    from ._job import Job

__all__ = ["Slot", "IDLE", "PROMPT", "GENERATING"]

IDLE = 0
PROMPT = 1       # prompt tokens still to evaluate
GENERATING = 2   # one token per step


class Slot:
    __slots__ = (
        # the sequence (lives across requests)
        "id", "seq", "n_ctx", "cache", "n_valid", "sys_version", "t_last_used", "cache_lora",
        # the request being served
        "state", "job", "lora", "prompt", "i_prompt", "pos", "n_sys", "n_keep", "ga_i", "can_shift",
        "shifted", "valid_limit", "chain", "decoder", "stop", "n_probs", "n_predict",
        "t_max_ms", "ignore_eos", "sampled", "i_batch", "n_decoded", "out_tokens", "parts", "held_tokens",
        "held_probs", "n_cached", "n_prompt_eval", "n_prompt_user", "truncated",
        "stopped_eos", "stopped_limit", "stopped_word", "stopping_word", "t_start",
        "t_prompt_start", "t_prompt_end", "t_last",
    )

    def __init__(self, id: int, n_ctx: int) -> None:
        self.id = id
        self.seq = id
        self.n_ctx = n_ctx
        # Tokens whose KV entries this sequence holds, in position order; cache[:n_valid]
        # is exactly what evaluating those tokens from scratch would give (a context
        # shift makes the rest approximate, so it is not offered for reuse).
        self.cache: list[int] = []
        self.n_valid = 0
        self.sys_version = -1
        self.t_last_used = 0.0
        self.cache_lora: tuple[float, ...] = ()  # LoRA scales the cached KV was computed with
        self.lora: tuple[float, ...] = ()        # ...and those of the request being served
        self.state = IDLE
        self.job: Job | None = None
        self.chain: SamplerChain | None = None
        self.decoder: TokenDecoder | None = None
        self.stop = StopMatcher([])
        self.prompt: list[int] = []
        self._reset_request()

    def _reset_request(self) -> None:
        self.i_prompt = 0
        self.pos = 0
        self.n_sys = 0
        self.n_keep = 0
        self.ga_i = 0
        self.can_shift = False
        self.shifted = False
        self.valid_limit = 0
        self.n_probs = 0
        self.n_predict = -1
        self.t_max_ms = 0
        self.ignore_eos = False
        self.sampled = -1
        self.i_batch = -1
        self.n_decoded = 0
        self.out_tokens: list[int] = []
        self.parts: list[str] = []
        self.held_tokens: list[int] = []
        self.held_probs: list[dict[str, Any]] = []
        self.n_cached = 0
        self.n_prompt_eval = 0
        self.n_prompt_user = 0
        self.truncated = False
        self.stopped_eos = False
        self.stopped_limit = False
        self.stopped_word = False
        self.stopping_word = ""
        self.t_start = self.t_prompt_start = self.t_prompt_end = self.t_last = 0.0

    @property
    def busy(self) -> bool:
        return self.state != IDLE

    def release(self) -> None:
        """End the request; the sequence's cache stays for the next prompt to reuse."""
        if self.chain is not None:
            self.chain.close()
            self.chain = None
        self.decoder = None
        self.n_valid = min(self.valid_limit, len(self.cache)) if self.shifted else len(self.cache)
        self.state = IDLE
        self.job = None
        self.prompt = []
        self.t_last_used = time.monotonic()
        self._reset_request()

    def forget(self) -> None:
        """The sequence was emptied (KV removed): nothing is cached any more."""
        self.cache.clear()
        self.n_valid = 0
        self.sys_version = -1

    # ------------------------------------------------------------------ reports

    def timings(self) -> dict[str, float]:
        prompt_ms = max(0.0, (self.t_prompt_end - self.t_prompt_start) * 1000.0)
        end = self.t_last if self.t_last > self.t_prompt_end else self.t_prompt_end
        predicted_ms = max(0.0, (end - self.t_prompt_end) * 1000.0) if self.t_prompt_end else 0.0
        n_p, n_g = self.n_prompt_eval, self.n_decoded
        return {
            "prompt_n": n_p,
            "prompt_ms": prompt_ms,
            "prompt_per_token_ms": prompt_ms / n_p if n_p else 0.0,
            "prompt_per_second": 1000.0 * n_p / prompt_ms if prompt_ms > 0 else 0.0,
            "predicted_n": n_g,
            "predicted_ms": predicted_ms,
            "predicted_per_token_ms": predicted_ms / n_g if n_g else 0.0,
            "predicted_per_second": 1000.0 * n_g / predicted_ms if predicted_ms > 0 else 0.0,
        }

    def final_event(self) -> FinalEvent:
        job = self.job
        assert job is not None
        return FinalEvent(
            content="".join(self.parts),
            tokens=self.out_tokens,
            id_slot=self.id,
            tokens_predicted=self.n_decoded,
            tokens_evaluated=self.n_prompt_user,
            tokens_cached=self.n_cached,
            truncated=self.truncated,
            stopped_eos=self.stopped_eos,
            stopped_limit=self.stopped_limit,
            stopped_word=self.stopped_word,
            stopping_word=self.stopping_word,
            timings=self.timings(),
            generation_settings=job.settings,
            prompt=job.prompt_text,
        )

    def describe(self, n_ctx: int) -> dict[str, Any]:
        """The seed's /slots entry: generation settings, state and next_token."""
        job = self.job
        info: dict[str, Any] = dict(job.settings) if job is not None else {}
        n_remain = -1
        if job is not None and self.n_predict >= 0:
            n_remain = max(0, self.n_predict - self.n_decoded)
        info.update({
            "id": self.id,
            "id_task": job.id if job is not None else -1,
            "task_id": job.id if job is not None else -1,
            "n_ctx": n_ctx,
            "state": 1 if self.state != IDLE else 0,
            "is_processing": self.state != IDLE,
            "prompt": job.prompt_text if job is not None else "",
            "n_cached_tokens": len(self.cache),
            "next_token": {
                "has_next_token": self.state != IDLE,
                "n_remain": n_remain,
                "n_decoded": self.n_decoded,
                "stopped_eos": self.stopped_eos,
                "stopped_limit": self.stopped_limit,
                "stopped_word": self.stopped_word,
                "stopping_word": self.stopping_word,
            },
        })
        return info
