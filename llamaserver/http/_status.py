"""Server state: /health, /props, /slots (and slot actions), /models."""

from __future__ import annotations

from typing import Any

from quart import Blueprint, Response, request

from ..engine import Engine
from ._body import ApiModel, read_json_object, validate
from ._context import ApiContext, json_response
from ._errors import ApiError, invalid, not_supported
from ._options import SystemPrompt



def _flag(name: str) -> bool:
    """A query flag: present means on, unless it says 0/false/no."""
    if name not in request.args:
        return False
    return request.args.get(name, "").strip().lower() not in ("0", "false", "no", "off")


def _is_processing(slot: dict[str, Any]) -> bool:
    if "is_processing" in slot:
        return bool(slot["is_processing"])
    return slot.get("state", 0) != 0


class PropsUpdate(ApiModel):
    system_prompt: str | SystemPrompt | None = None
    anti_prompt: str | None = None
    user_name: str | None = None
    assistant_name: str | None = None


class SlotActionRequest(ApiModel):
    filename: str | None = None


def model_meta(engine: Engine | None) -> dict[str, Any] | None:
    if engine is None or engine.state != "ready":
        return None
    model, vocab = engine.model, engine.vocab
    return {"vocab_type": _int(getattr(vocab, "type", 0)), "n_vocab": vocab.n_tokens,
            "n_ctx_train": model.n_ctx_train, "n_embd": model.n_embd,
            "n_params": model.n_params, "size": model.size}


def _int(value: Any) -> Any:
    try:
        return int(value)
    except (TypeError, ValueError):
        return value


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    async def health() -> Response:
        state = ctx.state
        if state == "loading":
            body = ApiError(503, "Loading model", "unavailable_error").body()
            return json_response({"status": "loading model", **body}, 503)
        if state == "error":
            body = ApiError(500, "Model failed to load", "server_error").body()
            return json_response({"status": "error", **body}, 500)
        engine = ctx.ready_engine()
        slots = engine.slots()
        processing = sum(1 for s in slots if _is_processing(s))
        idle = len(slots) - processing
        payload: dict[str, Any] = {
            "status": "ok" if idle > 0 else "no slot available",
            "slots_idle": idle, "slots_processing": processing}
        if _flag("include_slots") and ctx.settings.endpoint_slots:
            payload["slots"] = slots
        status = 503 if (idle == 0 and _flag("fail_on_no_slot")) else 200
        return json_response(payload, status)

    bp.add_url_rule("/health", "health", health, methods=["GET"])
    bp.add_url_rule("/v1/health", "v1_health", health, methods=["GET"])

    @bp.get("/props")
    async def props() -> Response:
        engine = ctx.ready_engine()
        payload: dict[str, Any] = {"user_name": "", "assistant_name": "", "system_prompt": ""}
        payload.update(engine.props())
        payload.setdefault("default_generation_settings",
                           engine.default_generation_settings())
        payload.setdefault("total_slots", engine.n_slots)
        payload.setdefault("model_path", str(ctx.model_path or engine.model.path))
        payload.setdefault("chat_template", "")
        payload.setdefault("modalities", {"vision": False, "audio": False})
        payload.setdefault("build_info", ctx.build_info)
        payload.setdefault("model_alias", ctx.model_id)
        payload.setdefault("is_sleeping", False)
        return json_response(payload)

    @bp.post("/props")
    async def set_props() -> Response:
        if not ctx.settings.endpoint_props:
            raise not_supported("This server does not support changing global properties. "
                                "Start it with `--props`")
        update = validate(PropsUpdate, await read_json_object(request))
        engine = ctx.ready_engine()
        sp = update.system_prompt
        if isinstance(sp, SystemPrompt):
            engine.set_system_prompt(sp.prompt, sp.anti_prompt, sp.assistant_name)
        elif sp is not None:
            engine.set_system_prompt(sp, update.anti_prompt or update.user_name or "",
                                     update.assistant_name or "")
        return json_response({"success": True})

    @bp.get("/slots")
    async def slots() -> Response:
        if not ctx.settings.endpoint_slots:
            raise not_supported("This server does not support slots endpoint. Start it "
                                "without `--no-slots`")
        engine = ctx.ready_engine()
        slot_list = engine.slots()
        if _flag("fail_on_no_slot") and all(_is_processing(s) for s in slot_list):
            raise ApiError(503, "no slot available", "unavailable_error", retry_after=1)
        return json_response(slot_list)

    @bp.post("/slots/<id_slot>")
    async def slot_action(id_slot: str) -> Response:
        if ctx.settings.slot_save_path is None:
            raise not_supported("This server does not support slots action. Start it with "
                                "`--slot-save-path`")
        engine = ctx.ready_engine()
        if not id_slot.isascii() or not id_slot.lstrip("-").isdigit() or len(id_slot) > 10:
            raise invalid(f"Invalid slot id {id_slot[:32]!r}")
        slot = int(id_slot)
        if not 0 <= slot < engine.n_slots:
            raise invalid(f"id_slot {slot} is out of range: this server has "
                          f"{engine.n_slots} slot(s), numbered from 0")
        action = request.args.get("action", "")
        req = validate(SlotActionRequest, await read_json_object(request))
        if action in ("save", "restore"):
            if not req.filename:
                raise invalid("'filename' is required")
            method = engine.save_slot if action == "save" else engine.restore_slot
            result = await method(slot, req.filename)
        elif action == "erase":
            result = await engine.erase_slot(slot)
        else:
            raise invalid("Invalid action: use save, restore or erase")
        return json_response(result)

    async def models() -> Response:
        meta = model_meta(ctx.engine) if ctx.state == "ready" else None
        entry = {"id": ctx.model_id, "object": "model", "created": ctx.created,
                 "owned_by": "llamacpp", "meta": meta}
        return json_response({"object": "list", "data": [entry]})

    bp.add_url_rule("/v1/models", "v1_models", models, methods=["GET"])
    bp.add_url_rule("/models", "models", models, methods=["GET"])
