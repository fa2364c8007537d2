"""The worker thread: owns the context and runs continuous batching.

Each step:

1. runs queued commands (slot save/restore/erase), frees the slots of cancelled requests;
2. admits waiting requests into idle slots (longest cached prefix, else least recently used),
   applying a system prompt change once no slot is busy;
3. builds one batch: one token for every generating slot, then prompt chunks of the slots
   still reading their prompts, up to ``n_batch`` tokens (libllama splits it into ubatches);
4. decodes once and samples every slot that has logits, each with its own sampler chain;
5. hands the step's events to the event pump (:mod:`._pump`), which wakes the event loop(s)
   while the next step decodes.

When there is nothing to do the thread sleeps on a condition variable; ``submit`` and
``cancel`` wake it.
"""

from __future__ import annotations

import bisect
import concurrent.futures
import logging
import operator
import threading
import time
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, Sequence

from ._errors import EngineError, InvalidRequest, NotReady, Overloaded, Unsupported
from ._job import Job, SystemPromptUpdate
from ._metrics import Metrics
from ._prompt import common_prefix, fit_prompt
from ._pump import EventPump, Outbox
from ._slot import GENERATING, IDLE, PROMPT, Slot
from ._stop import StopMatcher
from .types import TokenEvent
from ._threadname import name_os_thread

if TYPE_CHECKING:
    from llama_ffi import Batch, Context, LoraAdapter, Model, Vocab

    from ._embedding import Embedder

__all__ = ["Worker", "WorkerConfig"]

_BY_SEQ = operator.attrgetter("seq")
_LORA_TURN_STEPS = 8  # steps one set of LoRA scales may keep the context while others wait
_log = logging.getLogger("llamaserver.engine")

_perf = time.perf_counter


@dataclass(frozen=True)
class WorkerConfig:
    n_slots: int
    n_ctx_slot: int
    n_batch: int
    queue_size: int
    cont_batching: bool
    context_shift: bool
    ga_n: int
    ga_w: int


class Worker:
    def __init__(self, model: Model, ctx: Context, config: WorkerConfig,
                 embedder: Embedder | None = None, loras: Sequence[LoraAdapter] = (),
                 default_lora: Callable[[], tuple[float, ...]] = tuple) -> None:
        from llama_ffi import Batch

        self.model = model
        self.vocab: Vocab = model.vocab
        self.ctx = ctx
        self.config = config
        self.embedder = embedder
        self.metrics = Metrics()
        self.slots = [Slot(i, config.n_ctx_slot) for i in range(config.n_slots)]
        self.sys_seq = config.n_slots          # the shared system prompt's own sequence
        self.sys_text = ""
        self.sys_tokens: list[int] = []
        self.sys_version = 0
        self.self_extend = config.ga_n > 1
        self.can_shift = config.context_shift and ctx.memory_can_shift and not self.self_extend
        self._eog = frozenset(self.vocab.eog_tokens)
        self._batch: Batch = Batch(max(config.n_batch, config.n_slots))
        self._cond = threading.Condition()
        self._inbox: list[Job | SystemPromptUpdate] = []
        self._waiting: deque[Job | SystemPromptUpdate] = deque()
        self._commands: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._active: list[Slot] = []
        self._n_idle = config.n_slots
        self._stopping = False
        self.failure: BaseException | None = None  # why the thread died, if it did
        self._outbox: Outbox = {}
        self._pump = EventPump()
        self._pieces: dict[int, str] = {}
        self._sample_s = 0.0  # time inside the sampler chains during the current step
        self._avg_request_s = 1.0
        # A context applies one set of LoRA scales to a whole batch: requests with other
        # scales wait for a step of their own, taking turns (see _lora_for_step).
        self.loras = list(loras)
        self.default_lora = default_lora
        self._lora_applied: tuple[float, ...] = (0.0,) * len(self.loras)
        self._lora_streak = 0
        self.sys_lora: tuple[float, ...] = self._lora_applied

    # ------------------------------------------------------------------ any thread

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def post(self, item: Job | SystemPromptUpdate) -> None:
        """Queue a request; Overloaded when the wait queue is full."""
        with self._cond:
            if self._stopping:
                raise NotReady("the server is shutting down")
            n_pending = len(self._inbox) + len(self._waiting)
            if isinstance(item, Job) and n_pending >= self.config.queue_size + self._n_idle:
                raise Overloaded(
                    f"the server is busy ({n_pending} requests waiting for a slot); retry later",
                    retry_after=max(1.0, round(self._avg_request_s, 1)))
            self._inbox.append(item)
            self._cond.notify()

    def call(self, fn: Callable[[], Any]) -> concurrent.futures.Future[Any]:
        """Run ``fn`` on the worker thread between steps."""
        future: concurrent.futures.Future[Any] = concurrent.futures.Future()
        with self._cond:
            if self._stopping:
                raise NotReady("the server is shutting down")
            self._commands.append((fn, future))
            self._cond.notify()
        return future

    def stop(self) -> None:
        with self._cond:
            self._stopping = True
            self._cond.notify()

    @property
    def n_waiting(self) -> int:
        return len(self._inbox) + len(self._waiting)

    @property
    def n_busy(self) -> int:
        return self.config.n_slots - self._n_idle

    def kv_tokens(self) -> int:
        """KV cells in use: the system prompt's sequence plus every slot's (own copies)."""
        return len(self.sys_tokens) + sum(len(s.cache) for s in self.slots)

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        name_os_thread()
        cond = self._cond
        try:
            while True:
                with cond:
                    while not (self._stopping or self._inbox or self._commands or self._active
                               or self._waiting):
                        cond.wait()
                    if self._stopping:
                        break
                    if self._inbox:
                        self._waiting.extend(self._inbox)
                        self._inbox.clear()
                self._step()
        except BaseException as exc:
            self.failure = exc
            _log.exception("the engine's worker thread failed")
            raise
        finally:
            self._shutdown()

    def _shutdown(self) -> None:
        error = NotReady("the server is shutting down")
        with self._cond:
            self._stopping = True
            pending = list(self._waiting) + self._inbox
            self._waiting.clear()
            self._inbox.clear()
            commands = list(self._commands)
            self._commands.clear()
        for slot in list(self._active):
            if slot.job is not None:
                self._send(slot.job, error)
            self._release(slot)
        for item in pending:
            if isinstance(item, Job):
                item.drop_chain()
                self._send(item, error)
        for _, future in commands:
            future.set_exception(error)
        self._flush()

    # ------------------------------------------------------------------ one step

    def _step(self) -> None:
        t0 = _perf()
        if self._commands:
            self._run_commands()
        for slot in list(self._active):
            job = slot.job
            if job is not None and job.cancelled:
                self._cancel_slot(slot)
        if self._waiting:
            self._admit()
        if not self._active:
            self._flush()
            return

        ctx = self.ctx
        n_gen, n_prompt = self._fill_batch()
        batch = self._batch

        if n_gen + n_prompt == 0:
            if self._active:  # cannot happen; never spin on slots that make no progress
                _log.error("no slot could add a token to the batch; failing them")
                self._fail_batch(EngineError("internal error: the request made no progress"))
            self._flush()
            return

        t1 = _perf()
        try:
            ctx.decode(batch)
        except Exception as exc:  # a failed decode fails the requests in it, not the server
            _log.error("decode failed: %s", exc)
            self._fail_batch(EngineError(f"decode failed: {exc}"))
            self._flush()
            return
        t2 = _perf()

        m = self.metrics
        self._sample_s = 0.0
        m.n_decode_total += 1
        m.n_busy_slots_total += len(self._active)
        for slot in list(self._active):
            i = slot.i_batch
            if i < 0:
                continue
            slot.i_batch = -1
            try:
                if slot.state == PROMPT:
                    self._prompt_done(slot)
                    if slot.state != GENERATING:
                        continue
                self._sample(slot, i)
            except ValueError as exc:
                # GrammarError & co: the request's own options (a grammar that allows no token
                # the other options leave, e.g. with logit_bias or ignore_eos); this request only
                _log.info("slot %d: request rejected while sampling: %s", slot.id, exc)
                self._fail_slot(slot, InvalidRequest(f"sampling failed: {exc}"))
            except Exception as exc:
                _log.exception("slot %d failed", slot.id)
                self._fail_slot(slot, EngineError(f"generation failed: {exc}"))
        self._flush()

        t3 = _perf()
        decode_s = t2 - t1
        step_s = t3 - t0
        m.steps_total += 1
        m.step_seconds_total += step_s
        m.decode_seconds_total += decode_s
        m.sample_seconds_total += self._sample_s
        m.last_step_seconds = step_s
        m.last_decode_seconds = decode_s
        if n_prompt == 0:
            m.gen_steps_total += 1
            m.gen_tokens_total += n_gen
            m.gen_step_seconds_total += step_s
            m.gen_decode_seconds_total += decode_s
            m.gen_sample_seconds_total += self._sample_s

    # ------------------------------------------------------------------ admission

    def _admit(self) -> None:
        waiting = self._waiting
        keep: deque[Job | SystemPromptUpdate] = deque()
        barrier = False
        embedded = False
        while waiting:
            item = waiting.popleft()
            if item.cancelled:
                if isinstance(item, Job):
                    item.drop_chain()
                    self.metrics.requests_cancelled += 1
                continue
            if barrier:
                keep.append(item)
                continue
            new_system_prompt = self._system_prompt_change(item)
            if new_system_prompt is not None:
                # it changes every slot's cache: wait, and hold what follows, until none is busy
                if self._active:
                    barrier = True
                    keep.append(item)
                    continue
                try:
                    self._apply_system_prompt(new_system_prompt)
                except Exception as exc:  # this request's system prompt, not the engine
                    error = exc if isinstance(exc, EngineError) else InvalidRequest(
                        f"the system prompt could not be applied: {exc}")
                    if isinstance(item, Job):
                        item.drop_chain()
                        self._send(item, error)
                    else:
                        _log.error("system prompt not applied: %s", error)
                    continue
            if isinstance(item, SystemPromptUpdate):
                continue
            if item.request.embedding:
                if embedded:  # one per step, so that generating slots keep moving
                    keep.append(item)
                else:
                    embedded = True
                    self._run_embedding(item)
                continue
            slot = self._pick_slot(item)
            if slot is None:
                keep.append(item)
                continue
            try:
                self._start(slot, item)
            except EngineError as exc:
                item.drop_chain()
                self._send(item, exc)
            except ValueError as exc:  # the request's sampler options (e.g. a GrammarError)
                item.drop_chain()
                self._send(item, InvalidRequest(str(exc)))
            except Exception as exc:
                item.drop_chain()
                _log.exception("could not start a request")
                self._send(item, EngineError(f"could not start the request: {exc}"))
        self._waiting = keep

    def _system_prompt_change(self, item: Job | SystemPromptUpdate) -> str | None:
        """The system prompt ``item`` asks for, when it is not the current one."""
        if isinstance(item, SystemPromptUpdate):
            return item.text
        req = item.request
        if req.embedding or req.system_prompt is None or req.system_prompt == self.sys_text:
            return None
        return req.system_prompt

    def _full_prompt(self, job: Job) -> list[int]:
        return self.sys_tokens + job.tokens if self.sys_tokens else job.tokens

    def _pick_slot(self, job: Job) -> Slot | None:
        if self._n_idle == 0:
            return None
        want = job.request.id_slot
        if want >= 0:
            slot = self.slots[want]
            return slot if slot.state == IDLE else None
        # First the slot whose cache holds the longest part of the prompt (when it is more than
        # a tenth of it, as in llama-server), then one next to busy slots: the busy sequences
        # should stay a run of consecutive ids, which libllama decodes as one graph (see
        # _fill_batch); then the least recently used, whose cache is the least likely wanted.
        best: Slot | None = None
        best_key: tuple[int, int, float] | None = None
        use_cache = job.request.cache_prompt and not self.self_extend
        full = self._full_prompt(job) if use_cache else []
        slots = self.slots
        last = len(slots) - 1
        for slot in slots:
            if slot.state != IDLE:
                continue
            lcp = 0
            if (use_cache and slot.sys_version == self.sys_version and slot.n_valid
                    and slot.cache_lora == job.lora):
                cache = slot.cache if slot.n_valid == len(slot.cache) else slot.cache[:slot.n_valid]
                lcp = common_prefix(cache, full)
                if lcp * 10 <= len(full):
                    lcp = 0
            i = slot.id
            neighbours = ((i > 0 and slots[i - 1].state != IDLE)
                          + (i < last and slots[i + 1].state != IDLE))
            key = (lcp, neighbours, -slot.t_last_used)
            if best_key is None or key > best_key:
                best, best_key = slot, key
        return best

    def _start(self, slot: Slot, job: Job) -> None:
        from llama_ffi import TokenDecoder

        req = job.request
        ctx = self.ctx
        n_ctx = slot.n_ctx
        sys_tokens = self.sys_tokens
        n_sys = len(sys_tokens)
        n_keep = min(job.n_keep, len(job.tokens))
        if self.self_extend:
            user, truncated = job.tokens, False
            if n_sys + len(user) >= n_ctx:
                raise InvalidRequest(
                    f"the prompt ({n_sys + len(user)} tokens) does not fit in the context of a "
                    f"slot ({n_ctx} tokens)")
        else:
            user, truncated = fit_prompt(job.tokens, n_ctx - n_sys, n_keep)
        full = sys_tokens + user if n_sys else user
        if not full:
            # Nothing to evaluate: answer at once, as llama-server does for an empty prompt.
            job.drop_chain()
            slot_final = Slot(slot.id, n_ctx)
            slot_final.job = job
            self._send(job, slot_final.final_event())
            self.metrics.requests_total += 1
            return

        # Self-extend compresses positions in place, so its cache is never reused; otherwise
        # only a cache built on another system prompt has to go.
        # A cache computed with other LoRA scales holds other keys and values: not reusable.
        if self.self_extend or slot.sys_version != self.sys_version or slot.cache_lora != job.lora:
            ctx.seq_rm(slot.seq, -1, -1)
            slot.forget()
            slot.cache_lora = job.lora
            if n_sys and job.lora == self.sys_lora:
                # The KV streams are separate: this copies the system prompt's cells.
                ctx.seq_cp(self.sys_seq, slot.seq, -1, -1)
                slot.cache.extend(sys_tokens)
                slot.n_valid = n_sys
            slot.sys_version = self.sys_version
        use_cache = req.cache_prompt and not self.self_extend
        limit = slot.n_valid if use_cache else min(slot.n_valid, n_sys)
        cache = slot.cache if limit == len(slot.cache) else slot.cache[:limit]
        n_reuse = common_prefix(cache, full)
        if n_reuse >= len(full):  # the last prompt token must be evaluated to get logits
            n_reuse = len(full) - 1
        if n_reuse < len(slot.cache):
            ctx.seq_rm(slot.seq, n_reuse, -1)
            del slot.cache[n_reuse:]
        slot.n_valid = n_reuse

        chain = job.chain
        assert chain is not None
        if _uses_history(req.sampling):
            # Penalties and DRY look back over the prompt too, as in llama-server.
            chain.accept_prompt(user)
        job.chain = None

        now = _perf()
        slot.job = job
        slot.lora = job.lora
        slot.state = PROMPT
        slot.prompt = full
        slot.i_prompt = n_reuse
        slot.pos = n_reuse
        slot.n_sys = n_sys
        slot.n_keep = n_sys + n_keep
        slot.ga_i = 0
        slot.can_shift = self.can_shift and job.n_predict >= 0
        slot.shifted = False
        slot.valid_limit = len(full)
        slot.chain = chain
        slot.decoder = TokenDecoder(self.vocab)
        slot.stop = StopMatcher(req.stop)
        slot.n_probs = max(0, req.n_probs)
        slot.ignore_eos = req.ignore_eos
        slot.n_predict = job.n_predict
        slot.t_max_ms = max(0, req.t_max_predict_ms)
        slot.n_cached = max(0, n_reuse - n_sys)
        slot.n_prompt_eval = len(full) - n_reuse
        slot.n_prompt_user = len(user)
        slot.truncated = truncated
        slot.t_start = now
        slot.t_prompt_start = now
        job.id_slot = slot.id
        bisect.insort(self._active, slot, key=_BY_SEQ)
        self._n_idle -= 1
        m = self.metrics
        m.requests_total += 1
        if len(self._active) > m.busy_slots_peak:
            m.busy_slots_peak = len(self._active)

    # ------------------------------------------------------------------ batch building

    def _fill_batch(self) -> tuple[int, int]:
        """One token per generating slot plus prompt chunks, in sequence order.

        Order matters for speed: with a KV stream per sequence, libllama puts only runs of
        consecutive sequence ids into one micro-batch, so a batch in any other order is
        computed as several graphs (measured: 16 slots in shuffled order took 1.7x as long).
        """
        if not self.loras:
            return self._fill_batch_with(())
        tried: set[tuple[float, ...]] = set()
        while True:
            lora = self._lora_for_step(tried)
            n_gen, n_prompt = self._fill_batch_with(lora)
            tried.add(lora)
            # Nothing to run with these scales (their slots just hit the context limit):
            # give the step to other scales rather than declare it stuck.
            if n_gen + n_prompt or all(slot.lora in tried for slot in self._active):
                self._use_lora(lora)
                return n_gen, n_prompt

    def _fill_batch_with(self, lora: tuple[float, ...]) -> tuple[int, int]:
        batch = self._batch
        batch.clear()
        add = batch.add
        n_ctx = self.config.n_ctx_slot
        n_generating = sum(1 for slot in self._active
                           if slot.state == GENERATING and slot.lora == lora)
        prompts_allowed = self.config.cont_batching or n_generating == 0
        budget = self.config.n_batch - n_generating
        n_gen = n_prompt = 0
        for slot in list(self._active):  # kept sorted by sequence id
            if slot.lora != lora:
                continue
            if slot.state == GENERATING:
                if len(slot.cache) + 1 >= n_ctx and not self._context_shift(slot):
                    slot.stopped_limit = True
                    slot.truncated = True
                    self._finish(slot)
                    continue
                if self.self_extend:
                    self._group_attention(slot)
                tok = slot.sampled
                slot.i_batch = add(tok, slot.pos, slot.seq, True)
                slot.cache.append(tok)
                slot.pos += 1
                n_gen += 1
            elif slot.state == PROMPT and prompts_allowed and budget > 0:
                taken = self._add_prompt_chunk(slot, budget)
                budget -= taken
                n_prompt += taken
        return n_gen, n_prompt

    def _lora_for_step(self, exclude: set[tuple[float, ...]]) -> tuple[float, ...]:
        """The LoRA scales of this step: the applied ones while they have work, for a while."""
        configs: list[tuple[float, ...]] = []
        for slot in self._active:
            if slot.lora not in configs and slot.lora not in exclude:
                configs.append(slot.lora)
        applied = self._lora_applied
        if len(configs) <= 1:
            self._lora_streak = 0
            return configs[0] if configs else applied
        if applied in configs and self._lora_streak < _LORA_TURN_STEPS:
            self._lora_streak += 1
            return applied
        self._lora_streak = 0
        return configs[(configs.index(applied) + 1) % len(configs)] if applied in configs else configs[0]

    def _use_lora(self, config: tuple[float, ...]) -> None:
        if config != self._lora_applied:
            self.ctx.set_loras({a: s for a, s in zip(self.loras, config) if s})
            self._lora_applied = config

    def _add_prompt_chunk(self, slot: Slot, budget: int) -> int:
        prompt = slot.prompt
        start = slot.i_prompt
        take = min(budget, len(prompt) - start)
        if self.self_extend:
            # keep raw positions within one group window of the compressed ones
            take = min(take, self.config.ga_w)
            self._group_attention(slot)
        if take <= 0:
            return 0
        end = start + take
        last = end == len(prompt)
        chunk = prompt[start:end]
        i_last = self._batch.add_tokens(chunk, slot.pos, slot.seq, logits_last=last)
        if last:
            slot.i_batch = i_last
        slot.pos += take
        slot.i_prompt = end
        slot.cache.extend(chunk)
        return take

    def _context_shift(self, slot: Slot) -> bool:
        """Drop half of the tokens after n_keep so generation can go on; False if it cannot."""
        if not slot.can_shift:
            return False
        n_past = len(slot.cache)
        # The system prompt stays, whatever n_keep says: every request is built on it.
        n_keep = max(min(slot.n_keep, slot.n_ctx - 4), slot.n_sys)
        n_discard = (n_past - n_keep) // 2
        if n_discard <= 0:
            return False
        ctx = self.ctx
        ctx.seq_rm(slot.seq, n_keep, n_keep + n_discard)
        ctx.seq_add(slot.seq, n_keep + n_discard, n_past, -n_discard)
        del slot.cache[n_keep:n_keep + n_discard]
        slot.pos -= n_discard
        slot.truncated = True
        slot.shifted = True
        slot.valid_limit = min(slot.valid_limit, n_keep)
        _log.debug("slot %d: context shift, kept %d, discarded %d", slot.id, n_keep, n_discard)
        return True

    def _group_attention(self, slot: Slot) -> None:
        """Self-extend: compress older positions group-wise so they stay within the window."""
        ga_n, ga_w = self.config.ga_n, self.config.ga_w
        ctx = self.ctx
        while slot.pos >= slot.ga_i + ga_w:
            ib = (ga_n * slot.ga_i) // ga_w
            bd = (ga_w // ga_n) * (ga_n - 1)
            dd = (ga_w // ga_n) - ib * bd - ga_w
            ctx.seq_add(slot.seq, slot.ga_i, slot.pos, ib * bd)
            ctx.seq_div(slot.seq, slot.ga_i + ib * bd, slot.ga_i + ib * bd + ga_w, ga_n)
            ctx.seq_add(slot.seq, slot.ga_i + ib * bd + ga_w, slot.pos + ib * bd, dd)
            slot.pos -= bd
            slot.ga_i += ga_w // ga_n

    # ------------------------------------------------------------------ after decode

    def _prompt_done(self, slot: Slot) -> None:
        now = _perf()
        slot.t_prompt_end = now
        slot.t_last = now
        self.metrics.on_prompt_done(slot.n_prompt_eval, now - slot.t_prompt_start)
        slot.state = GENERATING
        if slot.n_predict == 0:
            slot.stopped_limit = True
            self._finish(slot)

    def _sample(self, slot: Slot, i: int) -> None:
        chain = slot.chain
        t0 = _perf()
        if slot.n_probs:
            tok, top = chain.sample_with_probs(self.ctx, i, slot.n_probs)
        else:
            tok = chain.sample(self.ctx, i)
            top = None
        slot.t_last = now = _perf()
        self._sample_s += now - t0
        slot.n_decoded += 1
        if tok in self._eog and not slot.ignore_eos:
            slot.stopped_eos = True
            self._finish(slot)
            return
        slot.out_tokens.append(tok)
        slot.held_tokens.append(tok)
        if top is not None:
            slot.held_probs.append(self._probs_entry(tok, top))
        piece = slot.decoder.feed(tok)
        if piece:
            stop = slot.stop
            if stop.active:
                text, word = stop.feed(piece)
            else:
                text, word = piece, None
            if text:
                self._emit(slot, text)
            if word is not None:
                slot.stopped_word = True
                slot.stopping_word = word
                self._finish(slot)
                return
        if slot.n_predict >= 0 and slot.n_decoded >= slot.n_predict:
            slot.stopped_limit = True
        elif len(slot.cache) + 1 >= slot.n_ctx and not slot.can_shift:
            slot.stopped_limit = True
            slot.truncated = True
        elif (slot.t_max_ms and "\n" in piece
              and (now - slot.t_prompt_end) * 1000.0 > slot.t_max_ms):
            slot.stopped_limit = True
        else:
            slot.sampled = tok
            return
        self._finish(slot)

    def _emit(self, slot: Slot, text: str) -> None:
        slot.parts.append(text)
        event = TokenEvent(text, slot.held_tokens, slot.held_probs if slot.n_probs else None)
        slot.held_tokens = []
        if slot.n_probs:
            slot.held_probs = []
        self._send(slot.job, event)

    def _finish(self, slot: Slot) -> None:
        if not slot.stopped_word:
            rest = slot.stop.release() + (slot.decoder.flush() if slot.decoder else "")
            if rest or slot.held_tokens:
                self._emit(slot, rest)
        final = slot.final_event()
        self._send(slot.job, final)
        m = self.metrics
        m.on_request_done(slot.n_decoded, max(0.0, slot.t_last - slot.t_prompt_end))
        self._avg_request_s = 0.8 * self._avg_request_s + 0.2 * (_perf() - slot.t_start)
        self._release(slot)

    def _release(self, slot: Slot) -> None:
        slot.release()
        if slot in self._active:
            self._active.remove(slot)
            self._n_idle += 1

    def _cancel_slot(self, slot: Slot) -> None:
        self.metrics.requests_cancelled += 1
        self._release(slot)

    def _fail_batch(self, error: EngineError) -> None:
        # Which KV entries the failed batch left behind is unknown: start those slots afresh.
        for slot in list(self._active):
            self._fail_slot(slot, error)

    def _fail_slot(self, slot: Slot, error: EngineError) -> None:
        slot.i_batch = -1
        self.ctx.seq_rm(slot.seq, -1, -1)
        slot.forget()
        if slot.job is not None:
            self._send(slot.job, error)
        self.metrics.requests_failed += 1
        self._release(slot)

    def _probs_entry(self, tok: int, top: list[tuple[int, float]]) -> dict[str, Any]:
        piece = self._piece
        return {"content": piece(tok),
                "probs": [{"tok_str": piece(t), "prob": p} for t, p in top]}

    def _piece(self, tok: int) -> str:
        text = self._pieces.get(tok)
        if text is None:
            text = self.vocab.token_to_piece(tok).decode("utf-8", "replace")
            self._pieces[tok] = text
        return text

    # ------------------------------------------------------------------ event delivery

    def _send(self, job: Job, item: Any) -> None:
        if not isinstance(item, TokenEvent):
            job.finished = True
        loop = job.channel.loop
        items = self._outbox.get(loop)
        if items is None:
            items = self._outbox[loop] = []
        items.append((job, item))

    def _flush(self) -> None:
        if not self._outbox:
            return
        outbox, self._outbox = self._outbox, {}
        self._pump.put(outbox)

    # ------------------------------------------------------------------ system prompt

    def _apply_system_prompt(self, text: str) -> None:
        """Evaluate ``text`` once into the system sequence; every slot's cache is dropped."""
        tokens = self.vocab.tokenize(text, add_special=True, parse_special=True) if text else []
        if len(tokens) >= self.config.n_ctx_slot - 1:
            raise InvalidRequest(
                f"the system prompt ({len(tokens)} tokens) does not fit in the context of a "
                f"slot ({self.config.n_ctx_slot} tokens)")
        ctx = self.ctx
        ctx.seq_rm(self.sys_seq, -1, -1)
        for slot in self.slots:
            ctx.seq_rm(slot.seq, -1, -1)
            slot.forget()
        self.sys_text = ""
        self.sys_tokens = []
        self.sys_version += 1
        if tokens:
            if self.loras:
                self._use_lora(self.default_lora())
            self.sys_lora = self._lora_applied
            batch = self._batch
            n_batch = self.config.n_batch
            for start in range(0, len(tokens), n_batch):
                batch.clear()
                batch.add_tokens(tokens[start:start + n_batch], start, self.sys_seq,
                                 logits_last=False)
                ctx.decode(batch)
            self.metrics.prompt_tokens_total += len(tokens)
        self.sys_text = text
        self.sys_tokens = tokens
        _log.info("system prompt set (%d tokens)", len(tokens))

    # ------------------------------------------------------------------ embeddings

    def _run_embedding(self, job: Job) -> None:
        embedder = self.embedder
        t0 = _perf()
        try:
            if embedder is None:
                raise Unsupported("This server does not support embeddings. Start it with "
                                  "`--embeddings`")
            vector = embedder.embed(job.tokens)
        except EngineError as exc:
            self._send(job, exc)
            return
        except Exception as exc:
            _log.exception("embedding failed")
            self._send(job, EngineError(f"embedding failed: {exc}"))
            return
        t1 = _perf()
        tmp = Slot(-1, embedder.n_ctx)  # a throwaway slot only formats the answer
        tmp.job = job
        tmp.n_prompt_eval = tmp.n_prompt_user = len(job.tokens)
        tmp.t_prompt_start, tmp.t_prompt_end = t0, t1
        final = tmp.final_event()
        final.embedding = vector
        self.metrics.requests_total += 1
        self.metrics.on_prompt_done(len(job.tokens), t1 - t0)
        self._send(job, final)

    # ------------------------------------------------------------------ commands

    def _run_commands(self) -> None:
        while self._commands:
            fn, future = self._commands.popleft()
            if not future.set_running_or_notify_cancel():
                continue
            try:
                future.set_result(fn())
            except BaseException as exc:
                future.set_exception(exc)

    def slot_for_command(self, id_slot: int) -> Slot:
        if not 0 <= id_slot < len(self.slots):
            raise InvalidRequest(f"invalid slot id {id_slot} (the server has "
                                 f"{len(self.slots)} slots)")
        slot = self.slots[id_slot]
        if slot.state != IDLE:
            raise InvalidRequest(f"slot {id_slot} is busy")
        return slot

    def close(self) -> None:
        """Free the worker's native objects (after the thread has ended)."""
        self._pump.close()
        for slot in self.slots:
            if slot.chain is not None:
                slot.chain.close()
                slot.chain = None
        self._batch.close()


def _uses_history(s: Any) -> bool:
    return bool(
        (s.repeat_last_n != 0 and (s.repeat_penalty != 1.0 or s.frequency_penalty != 0.0
                                   or s.presence_penalty != 0.0))
        or s.dry_multiplier != 0.0)
