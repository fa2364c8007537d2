"""Speculative decoding with a draft model (``-md``): a small model with the target's
vocabulary guesses the next tokens, and the target checks them all in one decode.

The draft model has a context of its own with one sequence per slot.  Before a step, every
slot that drafts this way is brought up to date in it (only the tokens its sequence lacks are
evaluated: a common prefix with what it holds is kept), and then all of them draft together,
one token per slot per draft decode, greedily, until a draft reaches its length or the draft
model gives its token less than ``p_min``.  The target then verifies as for n-gram drafts
(``_speculative.verify``): the output does not depend on the draft, only the speed does.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from ._prompt import common_prefix

if TYPE_CHECKING:
    from llama_ffi import Model

    from ._speculative import DraftModelConfig, SpecConfig

__all__ = ["DraftModel", "ModelDrafter", "check_same_vocabulary"]

_log = logging.getLogger("llamaserver.engine")

# Tokens below this id (control tokens) and a few at the end may differ between the models of
# one family, as libllama's speculative example allows.
_CHECK_FROM = 5
_MAX_SIZE_DIFFERENCE = 128


def check_same_vocabulary(target: Model, draft: Model) -> None:
    """ValueError unless ``draft`` tokenizes as ``target`` does (its tokens mean the same)."""
    a, b = target.vocab, draft.vocab
    if a.type_id != b.type_id:
        raise ValueError(f"the draft model's vocabulary is of another type ({b.type}, the "
                         f"model's is {a.type})")
    if a.add_bos != b.add_bos or (a.add_bos and a.bos != b.bos) or a.eos != b.eos:
        raise ValueError("the draft model's special tokens (BOS, EOS) differ from the model's")
    if abs(a.n_tokens - b.n_tokens) > _MAX_SIZE_DIFFERENCE:
        raise ValueError(f"the draft model's vocabulary has {b.n_tokens} tokens, the model's "
                         f"{a.n_tokens}")
    for tok in range(_CHECK_FROM, min(a.n_tokens, b.n_tokens)):
        if a.token_text(tok) != b.token_text(tok):
            raise ValueError(f"the draft model's token {tok} is {b.token_text(tok)!r}, the "
                             f"model's {a.token_text(tok)!r}: not the same vocabulary")


class ModelDrafter:
    """One request's side of draft-model speculation: its history, and the draft the last
    :meth:`DraftModel.run` left for it."""

    __slots__ = ("seq", "history", "pending", "room", "_limit", "_config")

    def __init__(self, seq: int, history: list[int], config: SpecConfig) -> None:
        self.seq = seq
        self.history = list(history)
        self.pending: list[int] = []
        self.room = 0
        self._config = config
        self._limit = config.n_max

    def append(self, tok: int) -> None:
        self.history.append(tok)

    def want(self, room: int) -> int:
        """How many tokens to draft, given the room the step leaves."""
        room = min(room, self._limit)
        return room if room >= self._config.n_min else 0

    def draft(self, room: int) -> list[int]:
        out, self.pending = self.pending[:room], []
        return out if len(out) >= self._config.n_min else []

    def accepted(self, n_drafted: int, n_accepted: int) -> None:
        # every drafted token cost the draft model a decode: draft less after rejections
        if n_accepted == n_drafted:
            self._limit = min(self._config.n_max, self._limit * 2)
        else:
            self._limit = max(self._config.n_min, n_accepted + 1)


class DraftModel:
    """The draft model, its context (a sequence per slot) and what each sequence holds."""

    def __init__(self, target: Model, config: DraftModelConfig, n_slots: int, n_ctx_slot: int,
                 n_batch: int, flash_attn: str) -> None:
        from llama_ffi import Batch, Context, Model, SamplerChain, SamplerParams

        self.p_min = config.p_min
        made: list[Any] = []
        try:
            self.model = Model(config.model, n_gpu_layers=config.n_gpu_layers)
            made.append(self.model)
            check_same_vocabulary(target, self.model)
            self.ctx = Context(self.model, n_ctx=n_ctx_slot * n_slots, n_seq_max=n_slots,
                               n_batch=n_batch, n_ubatch=min(n_batch, 512),
                               n_threads=config.threads,
                               n_threads_batch=config.threads_batch or config.threads,
                               flash_attn=flash_attn, n_outputs_max=max(n_slots, 1))
            made.insert(0, self.ctx)
            self.batch = Batch(max(n_batch, n_slots))
            made.insert(0, self.batch)
            self.chain = SamplerChain(self.model, SamplerParams(temperature=0.0))
        except BaseException:
            for owner in made:
                owner.close()
            raise
        self.eog = frozenset(self.model.vocab.eog_tokens)
        self.n_ctx_seq = self.ctx.n_ctx_seq
        self.n_batch = n_batch
        self._held: list[list[int]] = [[] for _ in range(n_slots)]
        self.decodes = 0

    def close(self) -> None:
        for owner in (self.chain, self.batch, self.ctx, self.model):
            owner.close()

    def run(self, wants: list[tuple[ModelDrafter, int]]) -> None:
        """Leave a draft of up to ``n`` tokens in each drafter's ``pending``.  A failure costs
        the drafts, never the requests."""
        todo = []
        for d, n in wants:
            d.pending = []
            # media placeholders are no tokens of the draft model's: such prompts go without
            if n > 0 and len(d.history) + n <= self.n_ctx_seq and min(d.history) >= 0:
                d.room = n
                todo.append(d)
        if not todo:
            return
        try:
            self._draft(todo)
        except Exception as exc:
            _log.warning("the draft model failed (%s); this step goes without drafts", exc)
            for d in todo:
                d.pending = []
                self.ctx.seq_rm(d.seq, -1, -1)  # what the failed decode left is unknown
                self._held[d.seq].clear()

    def _draft(self, todo: list[ModelDrafter]) -> None:
        live = self._catch_up(todo)
        ctx, batch = self.ctx, self.batch
        while live:
            batch.clear()
            rows = []
            for d in live:
                held = self._held[d.seq]
                tok = d.pending[-1]
                rows.append((d, batch.add(tok, len(held), d.seq, True)))
                held.append(tok)
            ctx.decode(batch)
            self.decodes += 1
            live = [d for d, row in rows if self._take(d, row)]

    def _take(self, d: ModelDrafter, row: int) -> bool:
        """Sample the draft's next token from ``row``; whether the draft goes on."""
        if self.p_min > 0.0:
            probs = self.chain.sample_probs(self.ctx, row, 0)
            if probs.prob < self.p_min:
                return False
            tok = probs.token
        else:
            tok = self.chain.sample(self.ctx, row)
        d.pending.append(tok)
        return len(d.pending) < d.room and tok not in self.eog

    def _catch_up(self, todo: list[ModelDrafter]) -> list[ModelDrafter]:
        """Evaluate what each sequence lacks of its history (a common prefix with what it
        holds is kept), in chunks of ``n_batch``; each one's first draft token is sampled
        right after the decode that ends its history.  Returns those whose draft goes on."""
        ctx, batch = self.ctx, self.batch
        live: list[ModelDrafter] = []
        ended: list[tuple[ModelDrafter, int]] = []

        def decode() -> None:
            ctx.decode(batch)
            self.decodes += 1
            live.extend(d for d, row in ended if self._take(d, row))
            ended.clear()
            batch.clear()

        batch.clear()
        for d in todo:
            held, history = self._held[d.seq], d.history
            n = min(common_prefix(held, history), len(history) - 1)  # the last gives logits
            if n < len(held):
                ctx.seq_rm(d.seq, n, -1)
                del held[n:]
            rest = history[n:]
            while rest:
                take = min(len(rest), self.n_batch - len(batch))
                last = take == len(rest)
                row = batch.add_tokens(rest[:take], len(held), d.seq, logits_last=last)
                held.extend(rest[:take])
                rest = rest[take:]
                if last:
                    ended.append((d, row))
                if len(batch) >= self.n_batch:
                    decode()
        if len(batch):
            decode()
        return live
