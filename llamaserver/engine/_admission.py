"""Admission: waiting requests into slots, in order, between two steps of the worker.

- A change of the shared system prompt waits until no slot is busy, and holds back what
  follows it (it changes every slot's cache).
- Embedding requests run one per step, so that generating slots keep moving.
- A request goes to the slot whose cache serves the longest part of its prompt, else to one
  next to busy slots, else to the least recently used.
- Whatever goes wrong while admitting a request fails that request only.
"""

from __future__ import annotations

import logging
import time
from collections import deque
from typing import TYPE_CHECKING

from ._errors import EngineError, InvalidRequest, PromptTooLong, Unsupported
from ._generation import Generation
from ._draft_model import ModelDrafter
from ._speculative import NgramDrafter
from ._job import EmbeddingJob, Job, SystemPromptUpdate
from ._prompt import fit_prompt, user_prompt
from ._slot import IDLE
from .types import Embedding, SystemPrompt

if TYPE_CHECKING:
    from llama_ffi import Embedder, SamplerParams

    from ._slot import Slot
    from ._worker import Worker

__all__ = ["Admission", "request_error"]

_log = logging.getLogger("llamaserver.engine")
_perf = time.perf_counter

Waiting = Job | EmbeddingJob | SystemPromptUpdate


class Admission:
    def __init__(self, worker: Worker) -> None:
        self._w = worker
        self.waiting: deque[Waiting] = deque()

    def run(self) -> None:
        w = self._w
        keep: deque[Waiting] = deque()
        barrier = False
        embedded = False
        while self.waiting:
            item = self.waiting.popleft()
            if item.cancelled:
                if not isinstance(item, SystemPromptUpdate):
                    item.drop()
                    w.metrics.requests_cancelled += 1
                continue
            if barrier:
                keep.append(item)
                continue
            prompt = self._system_prompt_change(item)
            if prompt is not None:
                if w.active:  # wait, and hold what follows, until no slot is busy
                    barrier = True
                    keep.append(item)
                    continue
                if not self._apply_system_prompt(prompt, item):
                    continue
            if isinstance(item, SystemPromptUpdate):
                continue
            if isinstance(item, EmbeddingJob):
                if embedded:
                    keep.append(item)
                else:
                    embedded = True
                    self._embed(item)
                continue
            slot = self._pick_slot(item)
            if slot is None:
                keep.append(item)
                continue
            try:
                self._start(slot, item)
            except Exception as exc:
                if not isinstance(exc, EngineError):
                    _log.exception("could not start a request")
                item.drop()
                w.send(item, request_error(exc, "could not start the request"))
        self.waiting = keep

    # ------------------------------------------------------------------ system prompt

    def _system_prompt_change(self, item: Waiting) -> SystemPrompt | None:
        """The system prompt ``item`` asks for, when it is not the current one."""
        if isinstance(item, SystemPromptUpdate):
            return item.prompt
        if isinstance(item, EmbeddingJob):
            return None
        wanted = item.request.system_prompt
        if wanted is None or wanted.text == self._w.shared.prompt.text:
            return None
        return wanted

    def _apply_system_prompt(self, prompt: SystemPrompt, item: Waiting) -> bool:
        w = self._w
        try:
            n = w.shared.apply(prompt, w.batch, w.lora)
        except Exception as exc:  # this request's system prompt, not the engine
            error = request_error(exc, "the system prompt could not be applied")
            if isinstance(item, SystemPromptUpdate):
                _log.error("system prompt not applied: %s", error)
            else:
                item.drop()
                w.send(item, error)
            return False
        w.metrics.prompt_tokens_total += n
        return True

    # ------------------------------------------------------------------ slots

    def _pick_slot(self, job: Job) -> Slot | None:
        w = self._w
        if w.n_idle == 0:
            return None
        slots = w.slots
        want = job.request.id_slot
        if want >= 0:
            slot = slots[want]
            return slot if slot.state == IDLE else None
        # First the slot whose cache holds the longest part of the prompt (when it is more than
        # a tenth of it, as in llama-server), then one next to busy slots: the busy sequences
        # should stay a run of consecutive ids, which libllama decodes as one graph; then the
        # least recently used, whose cache is the least likely wanted.
        use_cache = job.request.cache_prompt and not w.self_extend
        full = self._full_prompt(job) if use_cache else []
        best: Slot | None = None
        best_key: tuple[int, int, float] | None = None
        last = len(slots) - 1
        for slot in slots:
            if slot.state != IDLE:
                continue
            lcp = slot.cache.reusable(full, job.lora) if use_cache else 0
            if lcp * 10 <= len(full):
                lcp = 0
            i = slot.id
            neighbours = ((i > 0 and slots[i - 1].state != IDLE)
                          + (i < last and slots[i + 1].state != IDLE))
            key = (lcp, neighbours, -slot.cache.t_last_used)
            if best_key is None or key > best_key:
                best, best_key = slot, key
        return best

    def _full_prompt(self, job: Job) -> list[int]:
        sys_tokens = self._w.shared.prompt.tokens
        user, _ = user_prompt(job.request, len(sys_tokens))
        return [*sys_tokens, *user] if sys_tokens else user

    def _start(self, slot: Slot, job: Job) -> None:
        w = self._w
        req = job.request
        n_ctx = slot.n_ctx
        sys_tokens = w.shared.prompt.tokens
        n_sys = len(sys_tokens)
        user, n_keep = user_prompt(req, n_sys)
        stripped = len(req.tokens) - len(user)  # the BOS the system prompt's own replaces
        media = {n_sys + piece.offset - stripped: piece for piece in req.media}
        # Self-extend keeps every token (it compresses positions instead of cutting), and
        # truncation must not cut through a media piece: both answer a long prompt with an error.
        truncate = req.truncate and not w.self_extend and not media
        user, truncated = fit_prompt(user, n_ctx, n_sys, n_keep, truncate=truncate)
        full = [*sys_tokens, *user] if n_sys else user
        if not full:
            # Nothing to evaluate: answer at once, as llama-server does for an empty prompt.
            job.drop()
            gen = Generation(job, None, w.vocab, w.eog, w.send, n_prompt_user=0,
                             n_prompt_eval=0, n_cached=0, truncated=False)
            w.send(job, gen.final_event(slot.id))
            w.metrics.requests_total += 1
            return
        # M-RoPE media take fewer positions than cells: a reused prefix would not know where
        # its positions end, so such prompts start afresh.
        mrope = bool(media) and w.projector is not None and w.projector.uses_mrope
        n_reuse = slot.cache.prepare(
            full, lora=job.lora, reset=w.self_extend or mrope, n_shared=n_sys,
            use_cache=req.cache_prompt and not w.self_extend,
            spans=[(o, o + p.n_tokens) for o, p in media.items()])
        chain = job.chain
        assert chain is not None
        if _uses_history(req.sampling):
            # Penalties and DRY look back over the prompt too, as in llama-server (its media
            # cells, placeholders, are not tokens).
            chain.accept_prompt([t for t in user if t >= 0] if media else user)
        job.chain = None
        gen = Generation(job, chain, w.vocab, w.eog, w.send, n_prompt_user=len(user),
                         n_prompt_eval=len(full) - n_reuse, n_cached=n_reuse,
                         truncated=truncated)
        spec = w.config.speculative
        if spec is not None and req.speculative and not w.self_extend:
            if w.draft_model is not None and not media:
                gen.drafter = ModelDrafter(slot.seq, full, spec)
            elif spec.ngram:
                gen.drafter = NgramDrafter(full, spec)
        # a context shift would cut through media pieces
        slot.begin(job, gen, full, n_reuse, n_sys, n_keep,
                   can_shift=w.can_shift and req.n_predict >= 0 and not media, media=media)
        w.occupy(slot)
        gen.progress(n_reuse)

    # ------------------------------------------------------------------ embeddings

    def _embed(self, job: EmbeddingJob) -> None:
        w = self._w
        embedder = w.embedder
        t0 = _perf()
        try:
            if embedder is None:
                raise Unsupported("This server does not support embeddings. Start it with "
                                  "`--embeddings`")
            if len(job.tokens) > embedder.n_ctx:
                raise _too_large(len(job.tokens), embedder)
            if not job.tokens:
                raise InvalidRequest("the input is empty")
            if job.media:
                vectors = self._embed_media(embedder, job)
            else:
                vectors = embedder.embed(job.tokens)
        except Exception as exc:
            if not isinstance(exc, EngineError):
                _log.exception("embedding failed")
            w.send(job, request_error(exc, "embedding failed"))
            return
        finally:
            job.drop()
        w.metrics.requests_total += 1
        w.metrics.on_prompt_done(len(job.tokens), _perf() - t0)
        w.send(job, Embedding(vectors, len(job.tokens), embedder.pooled))


    def _embed_media(self, embedder: Embedder, job: EmbeddingJob) -> list[list[float]]:
        """Text runs and media pieces decoded in turn into the embedder's sequence, as upstream
        evaluates a prompt with media; the pooled vector is read at the end."""
        projector = self._w.projector
        assert projector is not None
        if not embedder.pooled:
            raise InvalidRequest("per-token embeddings (--pooling none) of media are not "
                                 "served; use a pooled embedding")
        ctx, batch, tokens = embedder.context, embedder.batch, job.tokens
        ctx.memory_clear()
        pos = at = 0
        for piece in [*job.media, None]:
            end = piece.offset if piece is not None else len(tokens)
            if end > at:
                batch.clear()
                for i, tok in enumerate(tokens[at:end]):
                    batch.add(tok, pos + i, 0, True)
                ctx.decode(batch)
                pos += end - at
            if piece is not None:
                pos = projector.decode_media(ctx, piece.chunk, piece.embeddings, pos, 0,
                                             n_batch=embedder.n_ctx)
                at = piece.offset + piece.n_tokens
        return [ctx.embeddings_seq(0)]


def _too_large(n: int, embedder: Embedder) -> InvalidRequest:
    limit = embedder.n_ctx
    if limit < embedder.context.n_ubatch:  # the model's positions end: no batch size helps
        return PromptTooLong(f"input ({n} tokens) is larger than the model's context "
                             f"({limit} tokens)", n_prompt_tokens=n, n_ctx=limit)
    return InvalidRequest(f"input ({n} tokens) is too large to process; increase the physical "
                          f"batch size (--ubatch-size, now {limit})")


def request_error(exc: BaseException, what: str) -> EngineError:
    """An engine error for one request: its own if it is one, a 400 for bad options (the
    library's ValueError family), else an internal error."""
    if isinstance(exc, EngineError):
        return exc
    if isinstance(exc, ValueError):
        return InvalidRequest(f"{what}: {exc}")
    return EngineError(f"{what}: {exc}")


def _uses_history(s: SamplerParams) -> bool:
    return bool(
        (s.repeat_last_n != 0 and (s.repeat_penalty != 1.0 or s.frequency_penalty != 0.0
                                   or s.presence_penalty != 0.0))
        or s.dry_multiplier != 0.0)
