"""Server state: /health, /props, /slots (and slot actions), /models."""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BeforeValidator, Field, WithJsonSchema
from quart import Blueprint, Response, request

from ..engine import Engine, SystemPrompt
from ._body import M, ApiModel, validate
from ._context import ApiContext, json_response
from ._errors import ApiError, invalid, not_supported
from ._intake import read_model
from ._llama_shapes import default_slot, slot_entry
from ._options import SystemPromptObject


def _flag_value(value: Any) -> Any:
    # a query flag: present means on ("?include_slots"), unless it says 0/false/no/off
    if isinstance(value, str):
        return value.strip().lower() not in ("0", "false", "no", "off")
    return value


QueryFlag = Annotated[bool, BeforeValidator(_flag_value), WithJsonSchema({
    "type": "string", "description": "present means on, unless it says 0, false, no or off"})]


def _flag_field(description: str) -> Any:
    # off when absent; the schema's default would be a bool where the query holds text
    return Field(False, description=description,
                 json_schema_extra=lambda schema: schema.pop("default", None))


class HealthQuery(ApiModel):
    include_slots: QueryFlag = _flag_field("add the slots (needs the API key when keys are set)")
    fail_on_no_slot: QueryFlag = _flag_field("503 when no slot is idle")


class SlotsQuery(ApiModel):
    fail_on_no_slot: QueryFlag = _flag_field("503 when no slot is idle")


def _slot_id(value: Any) -> Any:
    # the path gives text; a decimal of at most 10 characters is a slot id, the rest is refused
    if isinstance(value, str) and value.isascii() and value.lstrip("-").isdigit() \
            and len(value) <= 10:
        return int(value)
    return value


class SlotPath(ApiModel):
    id_slot: Annotated[int, BeforeValidator(_slot_id)]


class SlotActionQuery(ApiModel):
    action: Literal["save", "restore", "erase"]


def query(model: type[M]) -> M:
    return validate(model, request.args.to_dict())


def slot_entries(ctx: ApiContext) -> list[dict[str, Any]]:
    """The seed's /slots list: each slot with its request's settings (the defaults if idle)."""
    engine = ctx.ready_engine()
    default = ctx.default_generation_settings()
    return [slot_entry(info, default if info.request is None else
                       ctx.generation_settings(info.request, info.lora))
            for info in engine.slots()]


def props(ctx: ApiContext) -> dict[str, Any]:
    engine = ctx.ready_engine()
    vocab = engine.vocab

    def special(tok: int) -> str:
        return vocab.token_to_piece(tok, special=True).decode("utf-8", "replace") if tok >= 0 else ""

    system = engine.system_prompt
    s = ctx.settings
    return {
        "user_name": system.user_name,
        "assistant_name": system.assistant_name,
        "system_prompt": system.text,
        "default_generation_settings": default_slot(ctx.default_generation_settings(),
                                                    engine.n_ctx_slot),
        "total_slots": engine.n_slots,
        "model_path": str(ctx.model_path or engine.model.path),
        "model_alias": ctx.model_id,
        "model_aliases": ctx.model_aliases,
        "model_tags": list(s.tags),
        "model_ftype": engine.model.ftype,
        "chat_template": engine.chat_template.source,
        "chat_template_caps": {},
        "bos_token": special(vocab.bos),
        "eos_token": special(vocab.eos),
        "n_ctx": engine.n_ctx,
        "n_ctx_slot": engine.n_ctx_slot,
        "modalities": modalities(engine),
        "media_marker": engine.projector.marker if engine.projector is not None else "",
        "endpoint_slots": s.endpoint_slots,
        "endpoint_props": s.endpoint_props,
        "endpoint_metrics": s.endpoint_metrics,
        "build_info": ctx.build_info,
        "is_sleeping": False,
        "prompt_cache": prompt_cache(engine),
    }


def prompt_cache(engine: Engine) -> dict[str, Any]:
    """The cache across slots and host memory: hits, tokens reused, memory used."""
    m = engine.metrics()
    if m is None:
        return {}
    return {"hits": m.prompt_cache_hits, "tokens_reused": m.prompt_cache_tokens_reused,
            "host_bytes": m.prompt_cache_host_bytes, "host_entries": m.prompt_cache_host_entries}


def modalities(engine: Engine) -> dict[str, bool]:
    projector = engine.projector
    return {"vision": bool(projector and projector.supports_vision),
            "audio": bool(projector and projector.supports_audio), "video": False}


class PropsUpdate(ApiModel):
    system_prompt: str | SystemPromptObject | None = None
    anti_prompt: str | None = None
    user_name: str | None = None
    assistant_name: str | None = None


class SlotActionRequest(ApiModel):
    filename: str | None = None


def model_meta(engine: Engine | None) -> dict[str, Any] | None:
    if engine is None or engine.state != "ready":
        return None
    model, vocab = engine.model, engine.vocab
    return {"vocab_type": vocab.type_id, "n_vocab": vocab.n_tokens, "n_ctx": engine.n_ctx_slot,
            "n_ctx_train": model.n_ctx_train, "n_embd": model.n_embd,
            "n_params": model.n_params, "size": model.size, "ftype": model.ftype}


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def health() -> Response:
        state = ctx.state
        if state == "loading":
            body = ApiError(503, "Loading model", "unavailable_error").body()
            return json_response({"status": "loading model", **body}, 503)
        if state == "error":
            body = ApiError(500, ctx.failure, "server_error").body()
            return json_response({"status": "error", **body}, 500)
        slots = ctx.ready_engine().slots()
        processing = sum(1 for s in slots if s.is_processing)
        idle = len(slots) - processing
        payload: dict[str, Any] = {
            "status": "ok" if idle > 0 else "no slot available",
            "slots_idle": idle, "slots_processing": processing}
        flags = query(HealthQuery)
        if flags.include_slots and ctx.settings.endpoint_slots:
            payload["slots"] = slot_entries(ctx)
        status = 503 if (idle == 0 and flags.fail_on_no_slot) else 200
        return json_response(payload, status)

    bp.add_url_rule("/health", "health", health, methods=["GET"])
    bp.add_url_rule("/v1/health", "v1_health", health, methods=["GET"])

    @bp.get("/props")
    async def props_view() -> Response:
        return json_response(props(ctx))

    @bp.post("/props")
    async def set_props() -> Response:
        if not ctx.settings.endpoint_props:
            raise not_supported("This server does not support changing global properties. "
                                "Start it with `--props`")
        update = await read_model(ctx, PropsUpdate)
        engine = ctx.ready_engine()
        sp = update.system_prompt
        if isinstance(sp, SystemPromptObject):
            text, user, assistant = sp.prompt, sp.anti_prompt, sp.assistant_name
        elif sp is not None:
            text = sp
            user = update.anti_prompt or update.user_name or ""
            assistant = update.assistant_name or ""
        if sp is not None:
            prompt = await ctx.run_blocking(SystemPrompt.from_text, engine.vocab, text, user,
                                            assistant)
            engine.set_system_prompt(prompt)
        return json_response({"success": True})

    @bp.get("/slots")
    async def slots() -> Response:
        if not ctx.settings.endpoint_slots:
            raise not_supported("This server does not support slots endpoint. Start it "
                                "without `--no-slots`")
        flags = query(SlotsQuery)
        entries = slot_entries(ctx)
        if flags.fail_on_no_slot and all(e["is_processing"] for e in entries):
            raise ApiError(503, "no slot available", "unavailable_error", retry_after=1)
        return json_response(entries)

    @bp.post("/slots/<id_slot>")
    async def slot_action(id_slot: str) -> Response:
        if ctx.settings.slot_save_path is None:
            raise not_supported("This server does not support slots action. Start it with "
                                "`--slot-save-path`")
        engine = ctx.ready_engine()
        slot = validate(SlotPath, {"id_slot": id_slot}).id_slot
        action = query(SlotActionQuery).action
        req = await read_model(ctx, SlotActionRequest)
        if action in ("save", "restore"):
            if not req.filename:
                raise invalid("'filename' is required")
            if action == "save":
                saved = await engine.save_slot(slot, req.filename)
                return json_response({
                    "id_slot": saved.id_slot, "filename": saved.filename,
                    "n_saved": saved.n_saved, "n_written": saved.n_written,
                    "timings": {"save_ms": saved.save_ms}})
            restored = await engine.restore_slot(slot, req.filename)
            return json_response({
                "id_slot": restored.id_slot, "filename": restored.filename,
                "n_restored": restored.n_restored, "n_read": restored.n_read,
                "timings": {"restore_ms": restored.restore_ms}})
        erased = await engine.erase_slot(slot)
        return json_response({"id_slot": erased.id_slot, "n_erased": erased.n_erased})

    async def models() -> Response:
        engine = ctx.engine if ctx.state == "ready" else None
        meta = model_meta(engine)
        if engine is not None and meta is not None:
            meta["modalities"] = modalities(engine)
        entry = {"id": ctx.model_id, "aliases": ctx.model_aliases,
                 "tags": list(ctx.settings.tags), "object": "model", "created": ctx.created,
                 "owned_by": "llamacpp", "meta": meta}
        # the same model as Ollama's clients list it (upstream answers both)
        multimodal = engine is not None and engine.projector is not None
        listed = {"name": ctx.model_id, "model": ctx.model_id, "modified_at": "",
                  "size": "", "digest": "", "type": "model", "description": "",
                  "tags": list(ctx.settings.tags),
                  "capabilities": ["completion", *(["multimodal"] if multimodal else [])],
                  "parameters": "", "details": {"parent_model": "", "format": "gguf",
                                                "family": "", "families": [],
                                                "parameter_size": "",
                                                "quantization_level": ""}}
        return json_response({"models": [listed], "object": "list", "data": [entry]})

    bp.add_url_rule("/v1/models", "v1_models", models, methods=["GET"])
    bp.add_url_rule("/models", "models", models, methods=["GET"])
