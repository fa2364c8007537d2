"""Loading what the engine runs on: model, adapters, the shared context, embeddings (and
reranking, when they pool by rank), template."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from .config import EngineConfig

if TYPE_CHECKING:
    from ._draft_model import DraftModel
    from llama_ffi import (ChatTemplate, Context, Device, Embedder, LoraAdapter, Model, Projector,
                           RerankPrompt)

__all__ = ["Loaded", "load"]

_log = logging.getLogger("llamaserver.engine")


@dataclass
class Loaded:
    model: Model
    ctx: Context
    loras: list[LoraAdapter]
    embedder: Embedder | None
    rerank_prompt: RerankPrompt | None  # set when the embedder pools by rank
    chat_template: ChatTemplate
    n_ctx_slot: int
    ga_n: int   # self-extend factor in effect (1 when the cache cannot shift)
    projector: Projector | None = None
    draft: DraftModel | None = None

    def close(self) -> None:
        """Users before what they use: the model closes its contexts and adapters last."""
        for owner in (self.draft, self.embedder, self.ctx, self.projector, self.model):
            if owner is not None:
                owner.close()


def load(config: EngineConfig) -> Loaded:
    """Everything the worker needs; what was made is closed again if a later part fails."""
    import llama_ffi
    from llama_ffi import Model

    c = config
    if c.numa:
        llama_ffi.numa_init(c.numa)
    model = Model(c.model, n_gpu_layers=c.n_gpu_layers, main_gpu=c.main_gpu,
                  split_mode=c.split_mode,
                  tensor_split=list(c.tensor_split) if c.tensor_split else None,
                  use_mmap=c.use_mmap, use_mlock=c.use_mlock, devices=_devices(c))
    made: list[Any] = [model]
    try:
        loras = [llama_ffi.LoraAdapter(model, path) for path, _ in c.loras]
        ctx = _context(model, c)
        made.insert(0, ctx)
        n_ctx_slot = ctx.n_ctx_seq  # libllama rounds a stream up to 256 cells
        if n_ctx_slot < 8:
            raise ValueError(f"the context ({ctx.n_ctx} tokens) is too small for {c.n_slots} "
                             "slots")
        ga_n = _self_extend(c, ctx)
        embedder = None
        if c.embedding:
            embedder = llama_ffi.Embedder(
                model, n_ctx=min(c.n_ubatch, ctx.n_ctx), pooling=c.pooling, n_threads=c.threads,
                n_threads_batch=c.threads_batch, flash_attn=c.flash_attn)
            made.insert(0, embedder)
        rerank_prompt = None
        if embedder is not None and embedder.pooling == "rank":
            rerank_prompt = llama_ffi.RerankPrompt(model)  # ValueError: the model cannot rerank
        template = _chat_template(model, c.chat_template, c.jinja)
        projector = _projector(model, c) if c.mmproj is not None else None
        if projector is not None:
            made.insert(0, projector)
        draft = _draft_model(model, c, n_ctx_slot)
        if draft is not None:
            made.insert(0, draft)
    except BaseException:
        for owner in made:
            owner.close()
        raise
    return Loaded(model, ctx, loras, embedder, rerank_prompt, template, n_ctx_slot, ga_n,
                  projector, draft)


def _devices(c: EngineConfig) -> list[Device] | None:
    """The devices layers go to: --device's, else this server's RPC devices then the local
    GPUs.  Remote devices live in ggml's one registry per process, so as soon as anyone in the
    process added some, a server names its own: another server's RPC devices are not its."""
    import llama_ffi

    remote = llama_ffi.add_rpc_servers(c.rpc_servers) if c.rpc_servers else []
    for endpoint in c.rpc_servers:
        if not llama_ffi.is_loopback_endpoint(endpoint):
            _log.warning("the RPC server %s is not on loopback: rpc-server has no "
                         "authentication, keep it on a private network", endpoint)
    if c.devices is not None:
        return llama_ffi.find_devices(c.devices)
    if remote:
        return llama_ffi.default_devices(remote)
    return None   # every local GPU (llama_ffi.Model leaves others' RPC devices out)


def _draft_model(model: Model, c: EngineConfig, n_ctx_slot: int) -> DraftModel | None:
    spec = c.speculative
    if spec is None or spec.draft_model is None:
        return None
    from ._draft_model import DraftModel

    return DraftModel(model, spec.draft_model, c.n_slots, n_ctx_slot,
                      n_batch=max(c.n_batch, c.n_slots), flash_attn=c.flash_attn)


def _context(model: Model, c: EngineConfig) -> Context:
    from llama_ffi import Context

    total = c.ctx_size or model.n_ctx_train
    per_slot = max(1, total // c.n_slots)
    draft = c.speculative.n_max if c.speculative is not None else 0
    return Context(
        # One sequence per slot plus one holding the shared system prompt, each in a KV stream
        # of its own (not unified): a sequence's cells then stay in position order whatever
        # the other slots do, so a request gives the same tokens alone or batched (with flash
        # attention), and attention only reads its own stream.  With kv_unified (upstream's
        # --kv-unified) all of them share one buffer of the whole context.
        model, n_ctx=total if c.kv_unified else per_slot * (c.n_slots + 1),
        kv_unified=c.kv_unified, swa_full=c.swa_full, n_seq_max=c.n_slots + 1,
        n_batch=max(c.n_batch, c.n_slots), n_ubatch=c.n_ubatch, n_threads=c.threads,
        n_threads_batch=c.threads_batch, flash_attn=c.flash_attn, type_k=c.cache_type_k,
        type_v=c.cache_type_v, offload_kqv=c.offload_kqv, rope_freq_base=c.rope_freq_base,
        rope_freq_scale=c.rope_freq_scale, rope_scaling=c.rope_scaling,
        yarn_ext_factor=c.yarn_ext_factor, yarn_attn_factor=c.yarn_attn_factor,
        yarn_beta_fast=c.yarn_beta_fast, yarn_beta_slow=c.yarn_beta_slow,
        yarn_orig_ctx=c.yarn_orig_ctx,
        # a step reads one row of logits per sequence (and its draft's), never more: a smaller
        # reserved graph
        n_outputs_max=(c.n_slots + 1) * (1 + draft), n_outputs_max_per_seq=1 + draft)


def _self_extend(c: EngineConfig, ctx: Context) -> int:
    if c.grp_attn_n <= 1:
        return 1
    if c.grp_attn_w % c.grp_attn_n != 0:
        raise ValueError("--grp-attn-w must be a multiple of --grp-attn-n")
    if not ctx.memory_can_shift:
        _log.warning("self-extend needs a KV cache that can shift positions; disabled")
        return 1
    return c.grp_attn_n


def _chat_template(model: Model, override: str | None, jinja: bool) -> ChatTemplate:
    from llama_ffi import ChatTemplate

    if override:
        return ChatTemplate.from_model(model, override=override, jinja=jinja)
    try:
        return ChatTemplate.from_model(model, jinja=jinja)
    except Exception as exc:  # a model without a usable template still serves /completion
        _log.warning("the model's chat template is unusable (%s); using chatml", exc)
        return ChatTemplate.from_model(model, override="chatml")


def _projector(model: Model, c: EngineConfig) -> Projector:
    """The mmproj, loaded once in a child process first: libmtmd aborts the process on some
    malformed files, which must cost a start-up error, not the server."""
    import secrets

    import llama_ffi

    assert c.mmproj is not None
    llama_ffi.check_projector_file(c.model, c.mmproj)
    # A marker of this process's own (as upstream): text a client writes cannot place media.
    marker = f"<__media_{secrets.token_urlsafe(24)}__>"
    return llama_ffi.Projector(
        model, c.mmproj, use_gpu=c.mmproj_offload, n_threads=c.threads,
        image_min_tokens=c.image_min_tokens, image_max_tokens=c.image_max_tokens,
        media_marker=marker, limits=llama_ffi.MediaLimits(max_bytes=c.media_max_bytes))
