"""``Engine``: the asyncio-facing side of the inference engine.

Everything here runs on the caller's event loop and never blocks on inference: requests are
validated and tokenized, then queued for the worker thread (:mod:`._worker`), which owns the
model's context.  Results come back through :class:`~._stream.RequestStream`.
"""

from __future__ import annotations

import asyncio
import dataclasses
import itertools
import json
import logging
import math
import re
import threading
import time
from pathlib import Path
from typing import TYPE_CHECKING, Any, Literal

from ._errors import EngineError, InvalidRequest, NotReady, Unsupported
from ._gensettings import generation_settings
from ._job import Job, SystemPromptUpdate
from ._prompt import fit_prompt, tokenize_prompt
from ._stream import RequestStream
from ._worker import Worker, WorkerConfig
from .types import GenerationRequest

if TYPE_CHECKING:
    from llama_ffi import ChatTemplate, Context, LoraAdapter, Model, Vocab

    from ._embedding import Embedder

__all__ = ["Engine"]

_log = logging.getLogger("llamaserver.engine")

_SLOT_FILE = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,254}")


class Engine:
    """Continuous-batching inference over ``settings.parallel`` slots of one context.

    ``settings`` is a :class:`llamaserver.ServerSettings` (read, never changed).  Call
    ``await start()`` before submitting and ``await stop()`` at the end.
    """

    def __init__(self, settings: Any) -> None:
        self.settings = settings
        self._state: Literal["loading", "ready", "error"] = "loading"
        self._error: str | None = None
        self.model: Model | None = None
        self.vocab: Vocab | None = None
        self.chat_template: ChatTemplate | None = None
        self.n_slots: int = max(1, int(getattr(settings, "parallel", 1) or 1))
        self.n_ctx = 0
        self.n_ctx_slot = 0
        self.user_name = ""
        self.assistant_name = ""
        self._system_prompt = ""
        self._ctx: Context | None = None
        self._embedder: Embedder | None = None
        self._worker: Worker | None = None
        self._thread: threading.Thread | None = None
        self._ids = itertools.count()
        self._stopped = False
        self._model_name = ""
        self._default_settings: dict[str, Any] = {}
        self.loras: list[LoraAdapter] = []
        self._lora_scales: list[float] = []

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

    async def stop(self) -> None:
        """Cancel every request (their streams raise NotReady) and free the model."""
        self._stopped = True
        worker, thread = self._worker, self._thread
        if worker is not None:
            worker.stop()
            if thread is not None:
                await asyncio.to_thread(thread.join)
        self._thread = None
        self._close_native()

    def _close_native(self) -> None:
        for name in ("_worker", "_embedder", "_ctx", "model"):  # users before what they use
            owner = getattr(self, name)
            if owner is not None:
                owner.close()
                setattr(self, name, None)

    def _load(self) -> None:
        import llama_ffi
        from llama_ffi import ChatTemplate, Context, Model

        s = self.settings
        g = getattr
        path = g(s, "model", None) or llama_ffi.default_model_path()
        threads = g(s, "threads", None)
        threads_batch = g(s, "threads_batch", None) or threads
        flash_attn = g(s, "flash_attn", "auto")
        if g(s, "numa", None):
            llama_ffi.numa_init(g(s, "numa"))
        model = Model(
            path, n_gpu_layers=g(s, "n_gpu_layers", 0), main_gpu=g(s, "main_gpu", 0),
            split_mode=g(s, "split_mode", "layer"), tensor_split=g(s, "tensor_split", None),
            use_mmap=not g(s, "no_mmap", False), use_mlock=g(s, "mlock", False))
        self.model = model
        self.vocab = model.vocab
        self._load_loras(model)
        rope_freq_scale = g(s, "rope_freq_scale", 0.0)
        if g(s, "rope_scale", 0.0):
            rope_freq_scale = 1.0 / g(s, "rope_scale")

        def yarn(name: str) -> float | None:
            value = g(s, name, -1.0)
            return None if value is None or value < 0 else value

        n_batch = max(g(s, "batch_size", 2048), self.n_slots)
        per_slot = max(1, (g(s, "ctx_size", 0) or model.n_ctx_train) // self.n_slots)
        ctx = Context(
            # One sequence per slot plus one holding the shared system prompt, each in a KV
            # stream of its own (not unified): a sequence's cells then stay in position
            # order whatever the other slots do, so a request gives the same tokens alone
            # or batched (with flash attention), and attention only reads its own stream.
            model, n_ctx=per_slot * (self.n_slots + 1), kv_unified=False,
            n_seq_max=self.n_slots + 1, n_batch=n_batch, n_ubatch=g(s, "ubatch_size", 512),
            n_threads=threads, n_threads_batch=threads_batch,
            flash_attn=flash_attn, type_k=g(s, "cache_type_k", "f16"),
            type_v=g(s, "cache_type_v", "f16"), offload_kqv=not g(s, "no_kv_offload", False),
            rope_freq_base=g(s, "rope_freq_base", 0.0), rope_freq_scale=rope_freq_scale,
            rope_scaling=g(s, "rope_scaling", None), yarn_ext_factor=yarn("yarn_ext_factor"),
            yarn_attn_factor=yarn("yarn_attn_factor"), yarn_beta_fast=yarn("yarn_beta_fast"),
            yarn_beta_slow=yarn("yarn_beta_slow"), yarn_orig_ctx=g(s, "yarn_orig_ctx", 0),
            # a step reads one row of logits per sequence, never more: a smaller reserved graph
            n_outputs_max=self.n_slots + 1, n_outputs_max_per_seq=1)
        self._ctx = ctx
        self.n_ctx_slot = ctx.n_ctx_seq  # libllama rounds a stream up to 256 cells
        self.n_ctx = self.n_ctx_slot * self.n_slots
        if self.n_ctx_slot < 8:
            raise ValueError(f"the context ({ctx.n_ctx} tokens) is too small for "
                             f"{self.n_slots} slots")

        ga_n, ga_w = int(g(s, "grp_attn_n", 1)), int(g(s, "grp_attn_w", 512))
        if ga_n > 1:
            if ga_w % ga_n != 0:
                raise ValueError("--grp-attn-w must be a multiple of --grp-attn-n")
            if not ctx.memory_can_shift:
                _log.warning("self-extend needs a KV cache that can shift positions; disabled")
                ga_n = 1

        if g(s, "embedding", False):
            from ._embedding import Embedder

            pooling = g(s, "pooling", None)
            if pooling is None and model.pooling_type in ("none", "unspecified"):
                pooling = "mean"  # a generative model: the engine returns one pooled vector
            elif pooling == "none":
                pooling = "mean"
            self._embedder = Embedder(
                model, n_ctx=min(g(s, "ubatch_size", 512), ctx.n_ctx), pooling=pooling,
                n_threads=threads, n_threads_batch=threads_batch, flash_attn=flash_attn)

        self.chat_template = self._load_template(model, ChatTemplate)
        self._model_name = str(g(s, "alias", None) or path)

        config = WorkerConfig(
            n_slots=self.n_slots, n_ctx_slot=self.n_ctx_slot, n_batch=ctx.n_batch,
            queue_size=int(g(s, "queue_size", 64)),
            cont_batching=bool(g(s, "cont_batching", True)),
            context_shift=bool(g(s, "context_shift", True)), ga_n=ga_n, ga_w=ga_w)
        worker = Worker(model, ctx, config, self._embedder, loras=self.loras,
                        default_lora=lambda: tuple(self._lora_scales))
        self._worker = worker

        spf = g(s, "system_prompt_file", None)
        if spf:
            text, user, assistant = _read_system_prompt_file(Path(spf))
            worker._apply_system_prompt(text)  # the thread has not started: safe here
            self._system_prompt = text
            self.user_name, self.assistant_name = user, assistant
        self._default_settings = self._settings_for(None)

    def _load_template(self, model: Model, template_cls: type[ChatTemplate]) -> ChatTemplate:
        s = self.settings
        override = getattr(s, "chat_template", None)
        tfile = getattr(s, "chat_template_file", None)
        if tfile:
            override = Path(tfile).read_text(encoding="utf-8")
        if override:
            return template_cls.from_model(model, override=override)
        try:
            return template_cls.from_model(model)
        except Exception as exc:  # a model without a usable template still serves /completion
            _log.warning("the model's chat template is unusable (%s); using chatml", exc)
            return template_cls.from_model(model, override="chatml")

    # ------------------------------------------------------------------ requests

    def _require_worker(self) -> Worker:
        if self._stopped:
            raise NotReady("the server is shutting down")
        if self.state == "error":
            raise NotReady(f"the server is unavailable: {self.error}")
        worker = self._worker
        if self.state != "ready" or worker is None:
            raise NotReady("Loading model")
        return worker

    def submit(self, req: GenerationRequest) -> RequestStream:
        """Queue a request; raises Overloaded, InvalidRequest, Unsupported or NotReady now.

        Errors found later (a prompt that cannot fit once the system prompt is known, a
        failed decode, shutdown) are raised by the stream.
        """
        worker = self._require_worker()
        vocab = self.vocab
        assert vocab is not None
        if not isinstance(req.id_slot, int) or not -1 <= req.id_slot < self.n_slots:
            raise InvalidRequest(f"invalid id_slot {req.id_slot!r}: the server has "
                                 f"{self.n_slots} slots (0..{self.n_slots - 1}, or -1 for any)")
        if not isinstance(req.stop, list) or not all(isinstance(w, str) for w in req.stop):
            raise InvalidRequest("'stop' must be an array of strings")
        if req.system_prompt is not None and not isinstance(req.system_prompt, str):
            raise InvalidRequest("'system_prompt' must be a string")
        if req.embedding and self._embedder is None:
            raise Unsupported("This server does not support embeddings. Start it with "
                              "`--embeddings`")

        system_prompt = self._system_prompt if req.system_prompt is None else req.system_prompt
        # As in the seed: BOS starts the system prompt when there is one, else the prompt.
        add_special = req.add_special and (req.embedding or not system_prompt)
        try:
            tokens, bos_added = tokenize_prompt(vocab, req.prompt, add_special=add_special,
                                                parse_special=req.parse_special)
        except EngineError:
            raise
        except (ValueError, TypeError) as exc:
            raise InvalidRequest(f"could not tokenize the prompt: {exc}") from None

        n_keep = len(tokens) if req.n_keep < 0 else req.n_keep + (1 if bos_added else 0)
        n_keep = min(n_keep, len(tokens))
        n_predict = self._effective_n_predict(req.n_predict)
        if not req.embedding:  # hopeless prompts fail now, the rest once the slot is known
            n_sys = len(worker.sys_tokens) if req.system_prompt is None else 0
            if worker.self_extend and n_sys + len(tokens) >= self.n_ctx_slot:
                raise InvalidRequest(f"the prompt ({len(tokens)} tokens) does not fit in the "
                                     f"context of a slot ({self.n_ctx_slot} tokens)")
            fit_prompt(tokens, self.n_ctx_slot - n_sys, n_keep)

        sampling = req.sampling
        changes: dict[str, Any] = {}
        if req.ignore_eos and not getattr(sampling, "ignore_eos", False):
            changes["ignore_eos"] = True
        server_seed = getattr(self.settings, "seed", -1)
        if server_seed is not None and server_seed >= 0 and sampling.seed in (-1, 0xFFFFFFFF):
            changes["seed"] = server_seed
        if req.n_probs and getattr(sampling, "n_probs", 0) != req.n_probs:
            changes["n_probs"] = req.n_probs
        if changes:
            sampling = dataclasses.replace(sampling, **changes)
            req = dataclasses.replace(req, sampling=sampling)

        chain = None
        if not req.embedding:
            from llama_ffi import SamplerChain

            try:
                chain = SamplerChain(self.model, sampling, n_ctx=self.n_ctx_slot)
            except (ValueError, TypeError) as exc:  # bad option values, token ids or grammar
                raise InvalidRequest(str(exc)) from None

        lora = self._lora_config(req.lora)
        prompt_text = req.prompt if isinstance(req.prompt, str) else vocab.detokenize(tokens)
        job = Job(next(self._ids), req, tokens, bos_added=bos_added, prompt_text=prompt_text,
                  n_predict=n_predict, n_keep=n_keep,
                  settings=self._settings_for(req, sampling=sampling, n_predict=n_predict),
                  chain=chain, loop=asyncio.get_running_loop(), wake=worker.wake)
        job.lora = lora
        job.settings["lora"] = [{"id": i, "scale": v} for i, v in enumerate(lora) if v]
        try:
            worker.post(job)
        except BaseException:
            job.drop_chain()
            raise
        if req.system_prompt is not None:
            self._system_prompt = req.system_prompt
        return RequestStream(job)

    def _effective_n_predict(self, n_predict: int) -> int:
        server = int(getattr(self.settings, "n_predict", -1))
        value = n_predict if n_predict >= 0 else -1
        if value < 0:
            value = server
        elif server >= 0:
            value = min(value, server)  # the server's -n is an upper bound, as upstream
        return value

    def _settings_for(self, req: GenerationRequest | None, *, sampling: Any = None,
                      n_predict: int | None = None) -> dict[str, Any]:
        if req is None:
            from llama_ffi import SamplerParams

            return generation_settings(
                SamplerParams(), model=self._model_name, n_ctx=self.n_ctx_slot,
                n_predict=self._effective_n_predict(-1), stop=[],
                n_keep=int(getattr(self.settings, "n_keep", 0)), n_probs=0, ignore_eos=False)
        return generation_settings(
            sampling if sampling is not None else req.sampling, model=self._model_name,
            n_ctx=self.n_ctx_slot, n_predict=n_predict if n_predict is not None else -1,
            stop=req.stop, n_keep=req.n_keep, n_probs=req.n_probs, ignore_eos=req.ignore_eos,
            cache_prompt=req.cache_prompt, id_slot=req.id_slot,
            t_max_predict_ms=req.t_max_predict_ms)

    # ------------------------------------------------------------------ LoRA adapters

    def _load_loras(self, model: Model) -> None:
        from llama_ffi import LoraAdapter

        s = self.settings
        if getattr(s, "lora_base", None):
            _log.warning("--lora-base is ignored: libllama applies adapters to the loaded model")
        wanted = [(Path(p), 1.0) for p in getattr(s, "lora", None) or []]
        wanted += [(Path(p), float(scale)) for p, scale in getattr(s, "lora_scaled", None) or []]
        for path, scale in wanted:
            self.loras.append(LoraAdapter(model, path))
            self._lora_scales.append(0.0 if getattr(s, "lora_init_without_apply", False) else scale)

    def lora_adapters(self) -> list[dict[str, Any]]:
        """GET /lora-adapters: every loaded adapter with its id, file and current global scale."""
        return [{"id": i, "path": str(adapter.path), "scale": self._lora_scales[i]}
                for i, adapter in enumerate(self.loras)]

    def _lora_config(self, scales: dict[int, float] | None) -> tuple[float, ...]:
        """A scale for every adapter; those not given get 0, as in llama-server."""
        if scales is None:
            return tuple(self._lora_scales)
        if not isinstance(scales, dict):
            raise InvalidRequest("'lora' must be a list of {\"id\": int, \"scale\": number}")
        config = [0.0] * len(self.loras)
        for key, scale in scales.items():
            if isinstance(key, bool) or not isinstance(key, int) or not 0 <= key < len(self.loras):
                raise InvalidRequest(f"invalid LoRA adapter id {key!r}: this server has "
                                     f"{len(self.loras)} adapter(s)")
            if isinstance(scale, bool) or not isinstance(scale, (int, float)) or not math.isfinite(scale):
                raise InvalidRequest(f"the scale of LoRA adapter {key} must be a finite number")
            config[key] = float(scale)
        return tuple(config)

    def set_lora_adapters(self, scales: dict[int, float]) -> list[dict[str, Any]]:
        """POST /lora-adapters: new global scales (adapters left out get 0); later requests use them."""
        self._lora_scales = list(self._lora_config(scales))
        return self.lora_adapters()

    # ------------------------------------------------------------------ system prompt

    @property
    def system_prompt(self) -> str:
        return self._system_prompt

    def set_system_prompt(self, text: str, user_name: str = "", assistant_name: str = "") -> None:
        """Replace the system prompt every slot starts with (applied once no slot is busy)."""
        worker = self._require_worker()
        if not isinstance(text, str):
            raise InvalidRequest("the system prompt must be a string")
        self.user_name = user_name
        self.assistant_name = assistant_name
        if text != self._system_prompt:
            self._system_prompt = text
            worker.post(SystemPromptUpdate(text))

    # ------------------------------------------------------------------ reports

    def default_generation_settings(self) -> dict[str, Any]:
        return dict(self._default_settings)

    def slots(self) -> list[dict[str, Any]]:
        worker = self._worker
        if worker is None:
            return []
        out = []
        for slot in worker.slots:
            info = slot.describe(self.n_ctx_slot)
            if slot.job is None:
                info = {**self._default_settings, **info}
            out.append(info)
        return out

    def props(self) -> dict[str, Any]:
        vocab = self.vocab
        template = self.chat_template

        def piece(tok: int) -> str:
            if vocab is None or tok < 0:
                return ""
            return vocab.token_to_piece(tok, special=True).decode("utf-8", "replace")

        return {
            "user_name": self.user_name,
            "assistant_name": self.assistant_name,
            "system_prompt": self._system_prompt,
            "default_generation_settings": self.default_generation_settings(),
            "total_slots": self.n_slots,
            "model_path": str(getattr(self.model, "path", "") or ""),
            "chat_template": getattr(template, "source", "") if template is not None else "",
            "bos_token": piece(vocab.bos) if vocab is not None else "",
            "eos_token": piece(vocab.eos) if vocab is not None else "",
            "n_ctx": self.n_ctx,
            "n_ctx_slot": self.n_ctx_slot,
        }

    def metrics(self) -> dict[str, Any]:
        """Counters for /metrics (names as in llama-server where it has them).

        ``python_*`` and ``gen_python_*`` measure the engine's own time per step (batch
        building, sampling, events) next to the time spent in ``llama_decode``.
        """
        worker = self._worker
        if worker is None:
            return {}
        data = worker.metrics.snapshot()
        kv = worker.kv_tokens()
        cells = self._ctx.n_ctx if self._ctx is not None else 0
        data.update({
            "requests_processing": worker.n_busy,
            "requests_deferred": worker.n_waiting,
            "kv_cache_tokens": kv,
            "kv_cache_usage_ratio": kv / cells if cells else 0.0,
            "n_ctx": self.n_ctx,
            "n_slots": self.n_slots,
        })
        return data

    # ------------------------------------------------------------------ slot files

    def _slot_path(self, filename: str) -> Path:
        base = getattr(self.settings, "slot_save_path", None)
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
        return path

    async def save_slot(self, id_slot: int, filename: str) -> dict[str, Any]:
        """Write a slot's prompt cache to ``--slot-save-path``/filename (seed's answer shape)."""
        worker = self._require_worker()
        path = self._slot_path(filename)
        ctx = self._ctx
        assert ctx is not None

        def run() -> dict[str, Any]:
            slot = worker.slot_for_command(id_slot)
            t0 = time.perf_counter()
            path.parent.mkdir(parents=True, exist_ok=True)
            tokens = list(slot.cache)
            n_written = ctx.state_seq_save_file(path, slot.seq, tokens)
            return {"id_slot": id_slot, "filename": filename, "n_saved": len(tokens),
                    "n_written": n_written,
                    "timings": {"save_ms": (time.perf_counter() - t0) * 1000.0}}

        return await asyncio.wrap_future(worker.call(run))

    async def restore_slot(self, id_slot: int, filename: str) -> dict[str, Any]:
        """Load a slot's prompt cache saved by :meth:`save_slot`."""
        from llama_ffi import LlamaError

        worker = self._require_worker()
        path = self._slot_path(filename)
        if not path.is_file():
            raise InvalidRequest(f"no saved slot named {filename!r}")
        ctx = self._ctx
        assert ctx is not None

        def run() -> dict[str, Any]:
            slot = worker.slot_for_command(id_slot)
            t0 = time.perf_counter()
            ctx.seq_rm(slot.seq, -1, -1)
            slot.forget()
            try:
                tokens = ctx.state_seq_load_file(path, slot.seq)
            except LlamaError as exc:
                ctx.seq_rm(slot.seq, -1, -1)
                raise InvalidRequest(f"unable to restore the slot: {exc}") from None
            if len(tokens) >= slot.n_ctx:
                ctx.seq_rm(slot.seq, -1, -1)
                raise InvalidRequest(f"the saved cache ({len(tokens)} tokens) does not fit in "
                                     f"a slot ({slot.n_ctx} tokens)")
            slot.cache.extend(tokens)
            slot.n_valid = len(tokens)
            slot.sys_version = worker.sys_version
            return {"id_slot": id_slot, "filename": filename, "n_restored": len(tokens),
                    "n_read": path.stat().st_size,
                    "timings": {"restore_ms": (time.perf_counter() - t0) * 1000.0}}

        return await asyncio.wrap_future(worker.call(run))

    async def erase_slot(self, id_slot: int) -> dict[str, Any]:
        """Drop a slot's prompt cache."""
        worker = self._require_worker()
        ctx = self._ctx
        assert ctx is not None

        def run() -> dict[str, Any]:
            slot = worker.slot_for_command(id_slot)
            n = len(slot.cache)
            ctx.seq_rm(slot.seq, -1, -1)
            slot.forget()
            return {"id_slot": id_slot, "n_erased": n}

        return await asyncio.wrap_future(worker.call(run))


def _read_system_prompt_file(path: Path) -> tuple[str, str, str]:
    """The -spf file: the seed's JSON ({"system_prompt": {...}} or its inner object), or text."""
    raw = path.read_text(encoding="utf-8")
    try:
        data = json.loads(raw)
    except ValueError:
        return raw, "", ""
    if isinstance(data, dict) and "system_prompt" in data:
        data = data["system_prompt"]
    if isinstance(data, str):
        return data, "", ""
    if isinstance(data, dict) and isinstance(data.get("prompt"), str):
        return (data["prompt"], str(data.get("anti_prompt", "") or ""),
                str(data.get("assistant_name", "") or ""))
    return raw, "", ""
