"""``Engine``: the asyncio-facing side of the inference engine.

Requests arrive resolved (see :mod:`.types`); the engine checks what only it knows and queues
them for the worker thread (:mod:`._worker`), which owns the model's context.  Results come
back through :class:`~._stream.RequestStream`.  Nothing here blocks on inference.
"""

from __future__ import annotations

import asyncio
import itertools
import logging
import math
import re
import threading
import time
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Literal

from ._errors import EngineError, InvalidRequest, NotReady, Unsupported
from ._job import EmbeddingJob, Job, PreparedRequest, SystemPromptUpdate
from ._loader import Loaded, load
from ._media import MediaEncoder, MediaPrompt
from ._metrics import EngineMetrics
from ._prompt import fit_prompt, user_prompt
from ._stream import RequestStream
from ._worker import Worker, WorkerConfig
from . import types as t
from .config import EngineConfig

if TYPE_CHECKING:
    from llama_ffi import ChatTemplate, LoraAdapter, Model, Projector, RerankPrompt, Vocab

__all__ = ["Engine"]

_log = logging.getLogger("llamaserver.engine")

_SLOT_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class Engine:
    """Continuous-batching inference over ``config.n_slots`` slots of one context.

    ``await start()`` before submitting and ``await stop()`` at the end.
    """

    def __init__(self, config: EngineConfig) -> None:
        self.config = config
        self.n_slots = max(1, config.n_slots)
        self._state: Literal["loading", "ready", "error"] = "loading"
        self._error: str | None = None
        self._loaded: Loaded | None = None
        self._media: MediaEncoder | None = None
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self._stopped = False
        self._system_prompt = t.SystemPrompt()  # the latest requested
        self._lora_scales: list[float] = [scale for _, scale in config.loras]
        self.n_ctx = 0
        self.n_ctx_slot = 0

    # ------------------------------------------------------------------ lifecycle

    @property
    def state(self) -> Literal["loading", "ready", "error"]:
        """"loading" until start() finished, "error" if loading or the worker failed."""
        worker = self._worker
        if worker is not None and worker.failure is not None:
            return "error"
        return self._state

    @property
    def error(self) -> str | None:
        worker = self._worker
        if worker is not None and worker.failure is not None:
            return f"the engine failed: {worker.failure}"
        return self._error

    async def start(self) -> None:
        """Load the model (in a thread) and start the worker; raises if loading fails."""
        if self._worker is not None:
            return
        self._state = "loading"
        try:
            await asyncio.to_thread(self._load)
        except BaseException as exc:
            self._state = "error"
            self._error = str(exc) or exc.__class__.__name__
            self._close_native()
            raise
        assert self._worker is not None
        self._thread = threading.Thread(target=self._worker.run, name="llamaserver-engine",
                                        daemon=True)
        self._thread.start()
        self._state = "ready"

    async def halt(self) -> None:
        """Stop serving: running requests end with a final event that says so
        (``stopped_shutdown``), queued ones raise NotReady, new ones are refused.  The model
        stays loaded (callers may still format what they received) until :meth:`stop`."""
        self._stopped = True
        worker, thread = self._worker, self._thread
        if worker is not None and worker.parked:
            # The thread sits inside libllama for good, using the model and context: they
            # cannot be freed (libllama would crash), so they are left to the process.
            _log.warning("the engine's native objects are not freed: libllama stopped inside them")
            from llama_ffi import abandon_native

            abandon_native(worker, self._loaded, self._media)
            self._worker = self._loaded = self._media = None
            self._thread = None
            return
        if worker is not None:
            worker.stop()
            if thread is not None:
                await asyncio.to_thread(thread.join)
        self._thread = None

    async def stop(self) -> None:
        """:meth:`halt`, then free the model."""
        await self.halt()
        self._close_native()

    def _close_native(self) -> None:
        worker, self._worker = self._worker, None
        if worker is not None:
            worker.close()
        loaded, self._loaded = self._loaded, None
        self._media = None
        if loaded is not None:
            loaded.close()

    def _load(self) -> None:
        c = self.config
        loaded = load(c)
        self._loaded = loaded
        if loaded.projector is not None:
            self._media = MediaEncoder(loaded.projector)
        self.n_ctx_slot = loaded.n_ctx_slot
        self.n_ctx = loaded.n_ctx_slot * self.n_slots
        worker = Worker(loaded, WorkerConfig(
            n_slots=self.n_slots, n_ctx_slot=loaded.n_ctx_slot, n_batch=loaded.ctx.n_batch,
            queue_size=c.queue_size, cont_batching=c.cont_batching,
            context_shift=c.context_shift, ga_n=loaded.ga_n, ga_w=c.grp_attn_w,
            speculative=c.speculative, remote_devices=c.remote_devices,
            cache_ram_bytes=c.cache_ram_mib << 20 if c.cache_ram_mib > 0 else c.cache_ram_mib),
            server_scales=lambda: tuple(self._lora_scales))
        self._worker = worker
        if c.system_prompt:
            prompt = t.SystemPrompt.from_text(loaded.model.vocab, c.system_prompt, c.user_name,
                                            c.assistant_name)
            # the thread has not started: applying it here is safe
            worker.shared.apply(prompt, worker.batch, worker.lora)
            self._system_prompt = prompt

    # ------------------------------------------------------------------ what was loaded

    def _require(self) -> Loaded:
        loaded = self._loaded
        if loaded is None:
            raise NotReady("Loading model")
        return loaded

    @property
    def model(self) -> Model:
        return self._require().model

    @property
    def vocab(self) -> Vocab:
        return self._require().model.vocab

    @property
    def chat_template(self) -> ChatTemplate:
        return self._require().chat_template

    @property
    def loras(self) -> list[LoraAdapter]:
        return self._require().loras

    @property
    def projector(self) -> Projector | None:
        """The multimodal projector (``mmproj``), or None for a text-only engine."""
        return self._require().projector

    def media_prompt(self, text: str, media: list[bytes], *, add_special: bool = True,
                     parse_special: bool = True) -> MediaPrompt:
        """A prompt whose ``projector.marker`` s stand for ``media`` (encoded images or audio),
        tokenized and with its media encoded (blocking: call it off the event loop).

        ``Unsupported`` without a projector; ``MediaError`` (a ``ValueError``) for media the
        projector cannot take or markers and media that do not pair up.
        """
        encoder = self._media
        if encoder is None:
            raise Unsupported("this server has no multimodal projector (start it with "
                              "--mmproj)")
        return encoder.prompt(text, media, add_special=add_special, parse_special=parse_special)

    @property
    def embedding_pooled(self) -> bool | None:
        """None without embeddings; else whether they are one vector per input."""
        embedder = self._require().embedder
        return None if embedder is None else embedder.pooled

    @property
    def rerank_prompt(self) -> RerankPrompt | None:
        """How (query, document) pairs become inputs of ``embed``; None unless the embeddings
        pool by rank (a reranking model)."""
        return self._require().rerank_prompt

    # ------------------------------------------------------------------ requests

    def _require_worker(self) -> Worker:
        if self._stopped:
            raise NotReady("the server is shutting down")
        worker = self._worker
        if worker is not None and worker.failure is not None:
            raise EngineError(f"the engine failed: {worker.failure}")
        if self._state != "ready" or worker is None:
            raise NotReady("Loading model")
        return worker

    def check_slot_id(self, id_slot: int, *, allow_any: bool = False) -> None:
        """``InvalidRequest`` unless ``id_slot`` names a slot (or is -1 with ``allow_any``)."""
        low = -1 if allow_any else 0
        if isinstance(id_slot, bool) or not isinstance(id_slot, int) or not (
                low <= id_slot < self.n_slots):
            raise InvalidRequest(f"invalid id_slot {id_slot!r}: the server has {self.n_slots} "
                                 f"slot(s), 0..{self.n_slots - 1}"
                                 + (", or -1 for any" if allow_any else ""))

    def prepare(self, request: t.GenerationRequest) -> PreparedRequest:
        """Check ``request`` against the engine and build its sampler chain (any thread).

        Raises ``InvalidRequest`` (a bad slot id, LoRA id, sampler option or grammar, a prompt
        that cannot fit whatever the slot) or ``NotReady``.  Errors only the slot can tell
        come later, from the stream.
        """
        from llama_ffi import SamplerChain

        worker = self._require_worker()
        if not self._require().ctx.has_memory:
            raise Unsupported(f"{self.model.path.name} cannot generate text (it has no KV cache: "
                              "an embedding or reranking model)")
        self.check_slot_id(request.id_slot, allow_any=True)
        system = request.system_prompt
        if system is not None:
            worker.shared.check(system)
        else:
            system = self._system_prompt
        user, n_keep = user_prompt(request, len(system.tokens))
        fit_prompt(user, self.n_ctx_slot, len(system.tokens), n_keep,
                   truncate=request.truncate and not worker.self_extend)
        lora = self._lora_config(request.lora)
        try:
            chain = SamplerChain(self.model, request.sampling, n_ctx=self.n_ctx_slot)
        except (ValueError, TypeError) as exc:  # bad option values, token ids or grammar
            raise InvalidRequest(str(exc)) from exc  # the cause tells a caller which
        return PreparedRequest(request, chain, lora)

    def submit(self, request: t.GenerationRequest | PreparedRequest) -> RequestStream:
        """Queue a request (on the event loop); raises Overloaded, InvalidRequest or NotReady.

        A ``GenerationRequest`` is prepared here, on the caller's thread; the HTTP layer
        prepares off the event loop first.  Errors found later (a prompt that cannot fit once
        the system prompt is known, a failed decode, shutdown) are raised by the stream.
        """
        worker = self._require_worker()
        prepared = request if isinstance(request, PreparedRequest) else self.prepare(request)
        job = Job(next(self._ids), prepared, asyncio.get_running_loop(), worker.wake)
        try:
            worker.post(job)
        except BaseException:
            job.drop()
            raise
        if job.request.system_prompt is not None:
            self._system_prompt = job.request.system_prompt
        return RequestStream(job)

    async def embed(self, tokens: list[int], media: MediaPrompt | None = None) -> t.Embedding:
        """The embedding of ``tokens`` (``--embedding``), computed between two steps; or of a
        prompt with media (``media_prompt``, whose native objects the engine then closes)."""
        try:
            worker = self._require_worker()
            if self._require().embedder is None:
                raise Unsupported("This server does not support embeddings. Start it with "
                                  "`--embeddings`")
        except BaseException:
            if media is not None:
                media.owner.close()
            raise
        if media is None:
            job = EmbeddingJob(next(self._ids), tokens, asyncio.get_running_loop(), worker.wake)
        else:
            job = EmbeddingJob(next(self._ids), media.tokens, asyncio.get_running_loop(),
                               worker.wake, media.media, media.owner)
        try:
            worker.post(job)
        except BaseException:
            job.drop()
            raise
        try:
            item = await job.channel.get()
        except asyncio.CancelledError:
            job.cancel()
            raise
        if isinstance(item, BaseException):
            raise item
        return item

    # ------------------------------------------------------------------ system prompt

    @property
    def system_prompt(self) -> t.SystemPrompt:
        """The shared system prompt (the latest requested; it applies once no slot is busy)."""
        return self._system_prompt

    def set_system_prompt(self, prompt: t.SystemPrompt) -> None:
        """Replace the system prompt every slot starts with (applied once no slot is busy)."""
        worker = self._require_worker()
        worker.shared.check(prompt)
        changed = prompt.text != self._system_prompt.text
        self._system_prompt = prompt
        if changed:
            worker.post(SystemPromptUpdate(prompt))

    # ------------------------------------------------------------------ LoRA adapters

    def lora_adapters(self) -> list[t.LoraInfo]:
        """Every loaded adapter with its id, file and current server-wide scale."""
        return [t.LoraInfo(i, str(adapter.path), self._lora_scales[i])
                for i, adapter in enumerate(self.loras)]

    def _lora_config(self, scales: Mapping[int, float] | None) -> tuple[float, ...]:
        """A scale for every adapter; those not given get 0, as in llama-server."""
        if scales is None:
            return tuple(self._lora_scales)
        n = len(self._lora_scales)
        config = [0.0] * n
        for key, scale in scales.items():
            if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < n:
                raise InvalidRequest(f"invalid LoRA adapter id {key!r}: this server has "
                                     f"{n} adapter(s)")
            if (isinstance(scale, bool) or not isinstance(scale, (int, float))
                    or not math.isfinite(scale)):
                raise InvalidRequest(f"the scale of LoRA adapter {key} must be a finite number")
            config[key] = float(scale)
        return tuple(config)

    def set_lora_scales(self, scales: Mapping[int, float]) -> list[t.LoraInfo]:
        """New server-wide scales (adapters left out get 0); later requests use them."""
        self._lora_scales = list(self._lora_config(scales))
        return self.lora_adapters()

    # ------------------------------------------------------------------ reports

    def slots(self) -> list[t.SlotInfo]:
        worker = self._worker
        return [] if worker is None else [slot.info() for slot in worker.slots]

    def metrics(self) -> EngineMetrics | None:
        worker, loaded = self._worker, self._loaded
        if worker is None or loaded is None:
            return None
        kv = worker.kv_tokens()
        cells = loaded.ctx.n_ctx
        prefix = worker.prefix
        return worker.metrics.snapshot(
            requests_processing=worker.n_busy, requests_deferred=worker.n_waiting,
            kv_cache_tokens=kv, kv_cache_usage_ratio=kv / cells if cells else 0.0,
            n_ctx=self.n_ctx, n_slots=self.n_slots,
            prompt_cache_hits=prefix.hits if prefix else 0,
            prompt_cache_tokens_reused=prefix.tokens_reused if prefix else 0,
            prompt_cache_host_bytes=prefix.host_bytes if prefix else 0,
            prompt_cache_host_entries=prefix.host_entries if prefix else 0)

    # ------------------------------------------------------------------ slot files

    def _slot_path(self, filename: str) -> Path:
        base = self.config.slot_save_path
        if not base:
            raise Unsupported("This server does not support slot actions. Start it with "
                              "`--slot-save-path`")
        if (not isinstance(filename, str) or not _SLOT_FILE.fullmatch(filename)
                or ".." in filename):
            raise InvalidRequest("invalid filename: use letters, digits, '.', '_' and '-' "
                                 "(no path separators)")
        root = Path(base).resolve()
        path = (root / filename).resolve()
        if path.parent != root:
            raise InvalidRequest("invalid filename")
        if path.is_dir():
            raise InvalidRequest(f"invalid filename: {filename!r} is a directory")
        return path

    async def _on_idle_slot(self, id_slot: int, action):  # type: ignore[no-untyped-def]
        worker = self._require_worker()
        self.check_slot_id(id_slot)
        return await asyncio.wrap_future(worker.call(lambda: action(worker.idle_slot(id_slot))))

    async def save_slot(self, id_slot: int, filename: str) -> t.SlotSaved:
        """Write a slot's prompt cache to ``slot_save_path``/filename."""
        path = self._slot_path(filename)

        def run(slot) -> t.SlotSaved:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            n_saved, n_written = slot.cache.save(path)
            return t.SlotSaved(id_slot, filename, n_saved, n_written,
                             (time.perf_counter() - t0) * 1000.0)

        return await self._on_idle_slot(id_slot, run)

    async def restore_slot(self, id_slot: int, filename: str) -> t.SlotRestored:
        """Load a slot's prompt cache saved by :meth:`save_slot`."""
        from llama_ffi import LlamaError

        path = self._slot_path(filename)
        if not path.is_file():
            raise InvalidRequest(f"no saved slot named {filename!r}")
        self._require_worker()

        def run(slot) -> t.SlotRestored:  # type: ignore[no-untyped-def]
            t0 = time.perf_counter()
            try:
                n = slot.cache.restore(path, slot.n_ctx)
            except (LlamaError, ValueError) as exc:
                raise InvalidRequest(f"unable to restore the slot: {exc}") from None
            return t.SlotRestored(id_slot, filename, n, path.stat().st_size,
                                (time.perf_counter() - t0) * 1000.0)

        return await self._on_idle_slot(id_slot, run)

    async def erase_slot(self, id_slot: int) -> t.SlotErased:
        """Drop a slot's prompt cache."""
        def run(slot) -> t.SlotErased:  # type: ignore[no-untyped-def]
            n = len(slot.cache)
            slot.cache.clear()
            return t.SlotErased(id_slot, n)

        return await self._on_idle_slot(id_slot, run)
