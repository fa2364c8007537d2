"""Building one step's batch: a token per generating slot (and its draft), then prompt chunks.

Order matters for speed: with a KV stream per sequence, libllama puts only runs of
consecutive sequence ids into one micro-batch, so a batch in any other order is computed as
several graphs (measured: 16 slots in shuffled order took 1.7x as long).  Slots whose LoRA
scales differ cannot share a decode: a step runs the slots of one set of scales.
"""

from __future__ import annotations

from typing import TYPE_CHECKING

from ._draft_model import ModelDrafter
from ._slot import GENERATING, PROMPT
from ._speculative import draft_room

if TYPE_CHECKING:
    from ._worker import Worker

__all__ = ["fill_batch"]


def fill_batch(w: Worker) -> tuple[int, int]:
    """Fill ``w.batch``; returns (generation tokens, prompt tokens) in it."""
    lora = w.lora
    if not lora:
        return _fill_with(w, ())
    tried: set[tuple[float, ...]] = set()
    while True:
        scales = lora.choose((slot.lora for slot in w.active), tried)
        n_gen, n_prompt = _fill_with(w, scales)
        tried.add(scales)
        # Nothing to run with these scales (their slots just hit the context limit):
        # give the step to other scales rather than declare it stuck.
        if n_gen + n_prompt or all(slot.lora in tried for slot in w.active):
            lora.apply(scales)
            return n_gen, n_prompt


def _fill_with(w: Worker, lora: tuple[float, ...]) -> tuple[int, int]:
    batch = w.batch
    batch.clear()
    add = batch.add
    config = w.config
    n_ctx = config.n_ctx_slot
    self_extend = w.self_extend
    ga_n, ga_w = config.ga_n, config.ga_w
    n_generating = len([slot for slot in w.active
                        if slot.state == GENERATING and slot.lora == lora])
    prompts_allowed = config.cont_batching or n_generating == 0
    budget = config.n_batch - n_generating
    prompt_budget = -1  # asked of the pace at the first prompt: a step of about 0.1 s
    if w.draft_model is not None and n_generating:
        _run_draft_model(w, lora, budget)
    n_gen = n_prompt = 0
    for slot in list(w.active):  # kept sorted by sequence id
        if slot.lora != lora:
            continue
        if slot.state == GENERATING:
            cache = slot.cache
            if len(cache.tokens) + 1 >= n_ctx and not slot.shift_context():  # per token: no __len__
                assert slot.gen is not None
                slot.gen.hit_context_limit()
                w.finish(slot)
                continue
            if self_extend:
                cache.compress(ga_n, ga_w)
            tok = slot.sampled
            slot.i_batch = add(tok, cache.push(tok), slot.seq, True)
            n_gen += 1
            drafter = slot.gen.drafter  # type: ignore[union-attr]
            if drafter is not None:
                draft = drafter.draft(draft_room(slot, budget))
                for d in draft:
                    add(d, cache.push(d), slot.seq, True)
                slot.draft = draft
                n_gen += len(draft)
                budget -= len(draft)
        elif slot.state == PROMPT and prompts_allowed:
            if prompt_budget < 0:
                prompt_budget = w.pace.prompt_budget()
            room = min(budget, prompt_budget)
            if room <= 0:
                continue
            if self_extend:
                # keep raw positions within one group window of the compressed ones
                slot.cache.compress(ga_n, ga_w)
                room = min(room, ga_w)
            taken = slot.feed_prompt(batch, room)
            budget -= taken
            prompt_budget -= taken
            n_prompt += taken
    return n_gen, n_prompt


def _run_draft_model(w: Worker, lora: tuple[float, ...], budget: int) -> None:
    """Draft for every generating slot that speculates with the draft model, all at once; the
    batch's room is shared evenly between them."""
    drafting = [slot for slot in w.active if slot.state == GENERATING and slot.lora == lora
                and isinstance(slot.gen.drafter, ModelDrafter)]  # type: ignore[union-attr]
    if not drafting:
        return
    share = max(0, budget) // len(drafting)
    assert w.draft_model is not None
    w.draft_model.run([(slot.gen.drafter, slot.gen.drafter.want(draft_room(slot, share)))
                       for slot in drafting])  # type: ignore[union-attr]
