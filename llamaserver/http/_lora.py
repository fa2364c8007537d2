"""GET and POST /lora-adapters: the loaded LoRA adapters and their server-wide scales."""

from __future__ import annotations

from pydantic import TypeAdapter, ValidationError
from quart import Blueprint, Response

from ._body import describe_validation_error
from ._context import ApiContext, json_response
from ._errors import invalid
from ._intake import read_value
from ._options import LoraScale, scales_by_id


_SCALES = TypeAdapter(list[LoraScale])


def add_routes(bp: Blueprint, ctx: ApiContext) -> None:
    @bp.get("/lora-adapters")
    async def lora_adapters_view() -> Response:
        return json_response([{"id": a.id, "path": a.path, "scale": a.scale}
                              for a in ctx.ready_engine().lora_adapters()])

    @bp.post("/lora-adapters")
    async def set_lora_adapters_view() -> Response:
        body = await read_value(ctx)
        if not isinstance(body, list):
            raise invalid('the body must be an array of {"id": int, "scale": number}')
        try:
            entries = _SCALES.validate_python(body)
        except ValidationError as exc:
            raise invalid(describe_validation_error(exc)) from None
        ctx.ready_engine().set_lora_scales(scales_by_id(entries))
        return json_response({"success": True})
