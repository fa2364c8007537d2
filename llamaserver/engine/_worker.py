"""The worker thread: owns the context and runs continuous batching.

Each step:

1. runs queued commands (slot save/restore/erase), frees the slots of cancelled requests;
2. admits waiting requests into idle slots (:mod:`._admission`);
3. builds one batch: one token for every generating slot, then prompt chunks of the slots
   still reading their prompts, as many as a short step takes (:mod:`._pace`; at most
   ``n_batch`` tokens), with the LoRA scales of this step (:mod:`._lora`);
4. decodes once and lets every slot with logits sample (:mod:`._generation`);
5. hands the step's events to the event pump (:mod:`._pump`), which wakes the event loop(s)
   while the next step decodes.

When there is nothing to do the thread sleeps on a condition variable; ``post`` and
``cancel`` wake it.  Nothing a request brings may end the thread: whatever goes wrong while
serving one request fails that request.
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
from typing import TYPE_CHECKING, Any

from ._admission import Admission, request_error
from ._errors import EngineError, InvalidRequest, NotReady, Overloaded
from ._job import EmbeddingJob, Job, SystemPromptUpdate
from ._lora import LoraTurns
from ._metrics import Metrics
from ._prefix_cache import PrefixCache
from ._pace import StepPace
from ._pump import Delivery
from ._shared import SharedPrefix
from ._slot import GENERATING, IDLE, PROMPT, Slot
from ._speculative import SpecConfig, verify
from ._step_batch import fill_batch
from ._threadname import name_os_thread
from .types import Embedding, FinalEvent, MediaPiece

if TYPE_CHECKING:
    from ._loader import Loaded

__all__ = ["Worker", "WorkerConfig"]

_BY_SEQ = operator.attrgetter("seq")
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
    speculative: SpecConfig | None = None
    cache_ram_bytes: int = 8192 << 20   # host memory of the prefix cache (0: none, < 0: unbounded)
    remote_devices: bool = False        # told when an rpc-server's connection dies


class Worker:
    def __init__(self, loaded: Loaded, config: WorkerConfig,
                 server_scales: Callable[[], tuple[float, ...]]) -> None:
        from llama_ffi import Batch

        ctx = loaded.ctx
        self.ctx = ctx
        self.vocab = loaded.model.vocab
        self.embedder = loaded.embedder
        self.projector = loaded.projector
        self.draft_model = loaded.draft
        self.config = config
        self.metrics = Metrics()
        self.self_extend = config.ga_n > 1
        # self-extend compresses positions in place: its cells are nobody else's prefix
        self.prefix = None if self.self_extend else PrefixCache(ctx, config.cache_ram_bytes)
        self.slots = [Slot(i, ctx, config.n_ctx_slot, self.prefix)
                      for i in range(config.n_slots)]
        self.shared = SharedPrefix(ctx, config.n_slots, config.n_ctx_slot, config.n_batch,
                                   self.prefix)
        self.lora = LoraTurns(ctx, loaded.loras, server_scales)
        self.can_shift = config.context_shift and ctx.memory_can_shift and not self.self_extend
        self.eog = frozenset(self.vocab.eog_tokens)
        self.batch = Batch(max(config.n_batch, config.n_slots))
        self.admission = Admission(self)
        self.pace = StepPace(config.n_batch)  # prompt tokens per step
        self.active: list[Slot] = []     # busy slots, sorted by sequence id
        self.n_idle = config.n_slots
        self.avg_request_s = 1.0
        self.failure: BaseException | None = None  # why the thread died, if it did
        self._cond = threading.Condition()
        self._inbox: list[Job | EmbeddingJob | SystemPromptUpdate] = []
        self._commands: deque[tuple[Callable[[], Any], concurrent.futures.Future[Any]]] = deque()
        self._stopping = False
        self._delivery = Delivery(final=(FinalEvent, Embedding, BaseException))
        self.send = self._delivery.send
        self._flush = self._delivery.flush
        self._sample_s = 0.0  # time inside the sampler chains during the current step

    # ------------------------------------------------------------------ any thread

    def wake(self) -> None:
        with self._cond:
            self._cond.notify()

    def post(self, item: Job | EmbeddingJob | SystemPromptUpdate) -> None:
        """Queue a request; Overloaded when the wait queue is full."""
        with self._cond:
            if self._stopping:
                raise NotReady("the server is shutting down")
            n_pending = len(self._inbox) + len(self.admission.waiting)
            if (not isinstance(item, SystemPromptUpdate)
                    and n_pending >= self.config.queue_size + self.n_idle):
                raise Overloaded(
                    f"the server is busy ({n_pending} requests waiting for a slot); retry later",
                    retry_after=max(1.0, round(self.avg_request_s, 1)))
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
        return len(self._inbox) + len(self.admission.waiting)

    @property
    def n_busy(self) -> int:
        return self.config.n_slots - self.n_idle

    def kv_tokens(self) -> int:
        """KV cells in use: the shared prefix's sequence plus every slot's (own copies)."""
        return len(self.shared.cache) + sum(len(s.cache) for s in self.slots)

    # ------------------------------------------------------------------ the thread

    def run(self) -> None:
        from llama_ffi import guard_native_aborts

        name_os_thread()
        with guard_native_aborts(self._on_native_abort, remote=self.config.remote_devices):
            self._run()

    def _run(self) -> None:
        cond = self._cond
        admission = self.admission
        try:
            while True:
                # busy: the lock only to move requests in (the wait re-checks under it)
                if not (self._stopping or self._inbox or self._commands or self.active
                        or admission.waiting):
                    with cond:
                        while not (self._stopping or self._inbox or self._commands
                                   or self.active or admission.waiting):
                            cond.wait()
                if self._stopping:
                    break
                if self._inbox:
                    with cond:
                        admission.waiting.extend(self._inbox)
                        self._inbox.clear()
                try:
                    self._step()
                except Exception as exc:  # a bug, not a request's fault: fail what ran
                    _log.exception("engine step failed; failing the requests it held")
                    self.fail_batch(EngineError(f"internal error: {exc}"))
                    self._flush()
        except BaseException as exc:
            self.failure = exc
            _log.exception("the engine's worker thread failed")
            raise
        finally:
            self._shutdown()

    def _on_native_abort(self, exc: BaseException) -> None:
        """libllama gave up: ggml aborted on this thread, or on its RPC client's thread that
        this thread waits for (a remote device went away).  This thread never comes back from
        libllama.  Fail every request now, with ggml's reason, and refuse new ones; the engine
        reports the failure.  Called on the aborting thread, so only what is safe from any
        thread is done: the queues under the lock, the answers straight to the pump."""
        if self.failure is not None:
            return
        self.failure = exc
        _log.error("libllama stopped under the engine: %s", exc)
        error = EngineError(f"the model's backend failed: {exc}; the server must be restarted")
        pending, commands = self._stop_taking()
        jobs = [slot.job for slot in list(self.active) if slot.job is not None] + pending
        self._delivery.deliver_now([(job, error) for job in jobs if not job.finished])
        for _, future in commands:
            future.set_exception(error)

    def _stop_taking(self) -> tuple[list[Job | EmbeddingJob], list[tuple[Callable[[], Any], Any]]]:
        """Refuse new work; the requests that were waiting (dropped) and the commands."""
        with self._cond:
            self._stopping = True
            pending = list(self.admission.waiting) + self._inbox
            self.admission.waiting.clear()
            self._inbox.clear()
            commands = list(self._commands)
            self._commands.clear()
            self._cond.notify()
        jobs = [item for item in pending if not isinstance(item, SystemPromptUpdate)]
        for job in jobs:
            job.drop()
        return jobs, commands

    @property
    def parked(self) -> bool:
        """Whether the thread is stuck inside libllama for good (see ``_on_native_abort``)."""
        from llama_ffi import NativeAbort

        return isinstance(self.failure, NativeAbort)

    def _shutdown(self) -> None:
        if self.parked:   # every request was answered; the native state is not to be touched
            return
        error = NotReady("the server is shutting down")
        pending, commands = self._stop_taking()
        for slot in list(self.active):
            self._cut(slot, error)
        for job in pending:
            self.send(job, error)
        for _, future in commands:
            future.set_exception(error)
        self._flush()

    def _cut(self, slot: Slot, error: EngineError) -> None:
        """A request running at shutdown ends with what it has and a final event saying so."""
        gen, job = slot.gen, slot.job
        if gen is not None and job is not None and not job.cancelled:
            gen.stopped_shutdown = True
            try:
                self.finish(slot)
                return
            except Exception:  # the request, not the shutdown, fails
                _log.exception("slot %d: could not end the request at shutdown", slot.id)
        if job is not None:
            self.send(job, error)
        self.release(slot)

    # ------------------------------------------------------------------ one step

    def _step(self) -> None:
        t0 = _perf()
        if self._commands:
            self._run_commands()
        for slot in list(self.active):
            job = slot.job
            if job is not None and job.cancelled:
                self.metrics.requests_cancelled += 1
                self.release(slot)
        if self.admission.waiting:
            self.admission.run()
        if not self.active:
            self._flush()
            return
        if self.projector is not None:
            for slot in list(self.active):
                if slot.state == PROMPT:
                    piece = slot.media_due()
                    if piece is not None:
                        self._decode_media(slot, piece)
            if not self.active:
                self._flush()
                return

        n_gen, n_prompt = fill_batch(self)
        if n_gen + n_prompt == 0:
            if self.active:  # cannot happen; never spin on slots that make no progress
                _log.error("no slot could add a token to the batch; failing them")
                self.fail_batch(EngineError("internal error: the request made no progress"))
            self._flush()
            return

        t1 = _perf()
        try:
            self.ctx.decode(self.batch)
            if self.prefix is not None and self.prefix.unsettled:
                self.prefix.settled()
        except Exception as exc:  # a failed decode fails the requests in it, not the server
            _log.error("decode failed: %s", exc)
            self.fail_batch(EngineError(f"decode failed: {exc}"))
            self._flush()
            return
        t2 = _perf()

        m = self.metrics
        self.pace.on_decode(n_gen + n_prompt, n_prompt, t2 - t1)
        self._sample_s = 0.0
        m.n_decode_total += 1
        m.n_busy_slots_total += len(self.active)
        for slot in list(self.active):
            if slot.i_batch >= 0:
                self._after_decode(slot)
            elif slot.state == PROMPT and slot.gen is not None and slot.gen.return_progress:
                slot.gen.progress(slot.i_prompt)
        self._flush()
        m.on_step(_perf() - t0, t2 - t1, self._sample_s, n_gen, n_prompt)

    def _after_decode(self, slot: Slot) -> None:
        i, slot.i_batch = slot.i_batch, -1
        gen = slot.gen
        assert gen is not None
        try:
            if slot.state == PROMPT:
                slot.state = GENERATING
                more = gen.prompt_done()
                slot.cache.publish(len(slot.prompt))  # other slots may copy it now
                gen.progress(slot.i_prompt)
                self.metrics.on_prompt_done(gen.n_prompt_eval,
                                            gen.t_prompt_end - gen.t_prompt_start, gen.n_cached)
                if not more:
                    self.finish(slot)
                    return
            t0 = _perf()
            if slot.draft:
                tok = verify(slot, self.ctx, i, self.metrics)
            else:
                tok = gen.sample(self.ctx, i, slot.at_context_limit)
            self._sample_s += gen.t_last - t0
            if tok < 0:
                self.finish(slot)
            else:
                slot.sampled = tok
        except ValueError as exc:
            # GrammarError & co: the request's own options (a grammar that allows no token
            # the other options leave, e.g. with logit_bias or ignore_eos); this request only
            _log.info("slot %d: request rejected while sampling: %s", slot.id, exc)
            self.fail_slot(slot, InvalidRequest(f"sampling failed: {exc}"))
        except Exception as exc:
            _log.exception("slot %d failed", slot.id)
            self.fail_slot(slot, EngineError(f"generation failed: {exc}"))

    def _decode_media(self, slot: Slot, piece: MediaPiece) -> None:
        """Decode one media piece of a prompt on its own (a batch cannot mix embeddings and
        tokens, and a non-causal piece switches the whole context's attention): the other
        slots wait for one piece at most."""
        assert self.projector is not None and slot.gen is not None
        ctx = self.ctx
        last = slot.i_prompt + piece.n_tokens == len(slot.prompt)
        if self.lora:
            self.lora.apply(slot.lora)
        try:
            self.projector.decode_media(ctx, piece.chunk, piece.embeddings, slot.cache.pos,
                                        slot.seq, logits_last=last, n_batch=ctx.n_batch)
        except Exception as exc:
            _log.info("slot %d: media decode failed: %s", slot.id, exc)
            slot.cache.clear()  # how far the decode got is unknown
            self.fail_slot(slot, request_error(exc, "the media could not be decoded"))
            return
        self.metrics.n_decode_total += 1
        slot.media_done(piece)
        if last:  # its logits are the next token's: sample before the batch overwrites them
            slot.i_batch = (piece.n_tokens - 1) % ctx.n_batch
            self._after_decode(slot)
        else:
            slot.gen.progress(slot.i_prompt)

    # ------------------------------------------------------------------ request ends

    def occupy(self, slot: Slot) -> None:
        bisect.insort(self.active, slot, key=_BY_SEQ)
        self.n_idle -= 1
        m = self.metrics
        m.requests_total += 1
        if len(self.active) > m.busy_slots_peak:
            m.busy_slots_peak = len(self.active)

    def finish(self, slot: Slot) -> None:
        gen = slot.gen
        assert gen is not None
        gen.finish(slot.id)
        m = self.metrics
        m.on_request_done(gen.n_decoded, max(0.0, gen.t_last - gen.t_prompt_end))
        if len(slot.cache) > m.n_tokens_max:
            m.n_tokens_max = len(slot.cache)
        self.avg_request_s = 0.8 * self.avg_request_s + 0.2 * (_perf() - gen.t_start)
        self.release(slot)

    def release(self, slot: Slot) -> None:
        slot.end()
        if slot in self.active:
            self.active.remove(slot)
            self.n_idle += 1

    def fail_batch(self, error: EngineError) -> None:
        # Which KV entries the failed batch left behind is unknown: start those slots afresh.
        for slot in list(self.active):
            self.fail_slot(slot, error)

    def fail_slot(self, slot: Slot, error: EngineError) -> None:
        slot.i_batch = -1
        slot.cache.clear()
        if slot.job is not None:
            self.send(slot.job, error)
        self.metrics.requests_failed += 1
        self.release(slot)

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

    def idle_slot(self, id_slot: int) -> Slot:
        """The slot a command acts on (the engine checked the id); InvalidRequest if busy."""
        slot = self.slots[id_slot]
        if slot.state != IDLE:
            raise InvalidRequest(f"slot {id_slot} is busy")
        return slot

    def close(self) -> None:
        """Free the worker's native objects (after the thread has ended)."""
        self._delivery.close()
        for slot in self.slots:
            if slot.gen is not None:
                slot.gen.close()
        self.batch.close()
