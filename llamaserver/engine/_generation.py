"""``Generation``: one request's sampling, text and accounting, from its first token to the end.

It owns the request's sampler chain, its incremental decoder and stop matcher, the counters
and flags of its answer, and the events sent to its client.  The slot that serves it owns the
sequence; the worker decides when it samples.
"""

from __future__ import annotations

import time
from collections.abc import Callable
from typing import TYPE_CHECKING, Any

from llama_ffi import StopMatcher, TokenDecoder, TokenProbs

from ._budget import BudgetTracker
from .types import FinalEvent, PromptProgress, Timings, TokenEvent

if TYPE_CHECKING:
    from ._draft_model import ModelDrafter
    from ._speculative import NgramDrafter
    from llama_ffi import Context, SamplerChain, Vocab

    from ._job import Job

__all__ = ["Generation"]

_perf = time.perf_counter

Send = Callable[["Job", Any], None]


class Generation:
    __slots__ = (
        "job", "chain", "decoder", "stop", "n_probs", "n_predict", "t_max_ms", "ignore_eos",
        "eog", "n_decoded", "out_tokens", "parts", "held_tokens", "held_probs", "truncated",
        "stopped_eos", "stopped_limit", "stopped_word", "stopping_word", "stopped_shutdown",
        "n_prompt_user",
        "n_prompt_eval", "n_cached", "t_start", "t_prompt_start", "t_prompt_end", "t_last",
        "timings_per_token", "return_progress", "budget", "drafter", "draft_n",
        "draft_accepted", "_send",
    )

    def __init__(self, job: Job, chain: SamplerChain | None, vocab: Vocab,
                 eog: frozenset[int], send: Send, *, n_prompt_user: int, n_prompt_eval: int,
                 n_cached: int, truncated: bool) -> None:
        req = job.request
        self.job = job
        self.chain = chain
        self.decoder = TokenDecoder(vocab)
        self.stop = StopMatcher(list(req.stop))
        self.n_probs = req.sampling.n_probs
        self.ignore_eos = req.sampling.ignore_eos
        self.n_predict = req.n_predict
        self.t_max_ms = max(0, req.t_max_predict_ms)
        self.timings_per_token = req.timings_per_token
        self.return_progress = req.return_progress
        self.budget = BudgetTracker(req.budget) if req.budget is not None else None
        self.drafter: NgramDrafter | ModelDrafter | None = None  # set by the slot when it speculates
        self.draft_n = self.draft_accepted = 0
        self.eog = eog
        self._send = send
        self.n_decoded = 0
        self.out_tokens: list[int] = []
        self.parts: list[str] = []
        self.held_tokens: list[int] = []
        self.held_probs: list[TokenProbs] = []
        self.truncated = truncated
        self.stopped_eos = self.stopped_limit = self.stopped_word = False
        self.stopped_shutdown = False
        self.stopping_word = ""
        self.n_prompt_user = n_prompt_user
        self.n_prompt_eval = n_prompt_eval
        self.n_cached = n_cached
        self.t_start = self.t_prompt_start = _perf()
        self.t_prompt_end = self.t_last = 0.0

    # ------------------------------------------------------------------ the worker's calls

    def progress(self, processed: int) -> None:
        """Report how much of the prompt is in the slot (when the request asked)."""
        if self.return_progress:
            total = self.n_cached + self.n_prompt_eval
            self._send(self.job, PromptProgress(total, self.n_cached, processed,
                                                (_perf() - self.t_prompt_start) * 1000.0))

    def prompt_done(self) -> bool:
        """The prompt is evaluated; False when nothing is to be generated (n_predict 0)."""
        self.t_prompt_end = self.t_last = _perf()
        if self.n_predict == 0:
            self.stopped_limit = True
            return False
        return True

    def sample(self, ctx: Context, i: int, at_context_limit: bool) -> int:
        """Sample from batch row ``i`` and send what text is safe to send.

        Returns the token to decode next, or -1 when the generation has ended (then call
        :meth:`finish`).  ``at_context_limit``: the slot has no room for another token.
        """
        chain = self.chain
        assert chain is not None
        budget = self.budget
        forced = budget.next_forced() if budget is not None else -1
        if forced >= 0:  # the budget ran out: write its closing tokens, not a sample
            chain.accept(forced)
            tok, probs = forced, None
        elif self.n_probs:
            probs = chain.sample_probs(ctx, i, self.n_probs)
            tok = probs.token
        else:
            tok = chain.sample(ctx, i)
            probs = None
        self.t_last = now = _perf()
        self.n_decoded += 1
        if self.drafter is not None:
            self.drafter.append(tok)
        if tok in self.eog and not self.ignore_eos:
            self.stopped_eos = True
            return -1
        self.out_tokens.append(tok)
        self.held_tokens.append(tok)
        if probs is not None:
            self.held_probs.append(probs)
        piece = self.decoder.feed(tok)
        if budget is not None:
            budget.on_token(piece)
        if piece:
            stop = self.stop
            text, word = stop.feed(piece) if stop.active else (piece, None)
            if text:
                self._emit(text)
            if word is not None:
                self.stopped_word = True
                self.stopping_word = word
                return -1
        if self.n_predict >= 0 and self.n_decoded >= self.n_predict:
            self.stopped_limit = True
        elif at_context_limit:
            self.stopped_limit = self.truncated = True
        elif (self.t_max_ms and "\n" in piece
              and (now - self.t_prompt_end) * 1000.0 > self.t_max_ms):
            self.stopped_limit = True
        else:
            return tok
        return -1

    def hit_context_limit(self) -> None:
        """The slot is full and its context cannot shift."""
        self.stopped_limit = self.truncated = True

    def finish(self, id_slot: int) -> FinalEvent:
        """Send the held text and the final event; the sampler chain is freed."""
        if not self.stopped_word:
            rest = self.stop.release() + self.decoder.flush()
            if rest or self.held_tokens:
                self._emit(rest)
        final = self.final_event(id_slot)
        self._send(self.job, final)
        self.close()
        return final

    def close(self) -> None:
        chain, self.chain = self.chain, None
        if chain is not None:
            chain.close()

    # ------------------------------------------------------------------ reports

    def _emit(self, text: str) -> None:
        self.parts.append(text)
        event = TokenEvent(text, self.held_tokens, self.held_probs if self.n_probs else None,
                           self.timings() if self.timings_per_token else None)
        self.held_tokens = []
        if self.n_probs:
            self.held_probs = []
        self._send(self.job, event)

    def timings(self) -> Timings:
        prompt_ms = max(0.0, (self.t_prompt_end - self.t_prompt_start) * 1000.0)
        end = self.t_last if self.t_last > self.t_prompt_end else self.t_prompt_end
        predicted_ms = max(0.0, (end - self.t_prompt_end) * 1000.0) if self.t_prompt_end else 0.0
        return Timings(prompt_n=self.n_prompt_eval, prompt_ms=prompt_ms,
                       predicted_n=self.n_decoded, predicted_ms=predicted_ms,
                       cache_n=self.n_cached, draft_n=self.draft_n,
                       draft_n_accepted=self.draft_accepted)

    def final_event(self, id_slot: int) -> FinalEvent:
        return FinalEvent(
            content="".join(self.parts), tokens=self.out_tokens, id_slot=id_slot,
            tokens_predicted=self.n_decoded, tokens_evaluated=self.n_prompt_user,
            tokens_cached=self.n_cached, truncated=self.truncated,
            stopped_eos=self.stopped_eos, stopped_limit=self.stopped_limit,
            stopped_word=self.stopped_word, stopping_word=self.stopping_word,
            timings=self.timings(), stopped_shutdown=self.stopped_shutdown)

    @property
    def n_remain(self) -> int:
        return max(0, self.n_predict - self.n_decoded) if self.n_predict >= 0 else -1
