"""Generation options shared by /completion, /infill and the OpenAI endpoints.

The request model only checks types and bounds; every value left out stays ``None`` so that
``llama_ffi.SamplerParams`` and ``GenerationRequest`` keep the single set of defaults.
``_resolve`` turns the options into the engine's request.
"""

from __future__ import annotations

from typing import Annotated, Any

from pydantic import Field

from ._body import ApiModel, JsonInt

Int32 = Annotated[JsonInt, Field(ge=-(2**31), le=2**31 - 1)]
Count = Annotated[JsonInt, Field(ge=0, le=2**31 - 1)]
CountOrAll = Annotated[JsonInt, Field(ge=-1, le=2**31 - 1)]


class LoraScale(ApiModel):
    """One entry of a request's ``lora`` list, or of the POST /lora-adapters body."""

    id: JsonInt
    scale: float


def scales_by_id(entries: list[LoraScale]) -> dict[int, float]:
    return {entry.id: entry.scale for entry in entries}


class SystemPromptObject(ApiModel):
    """The seed's ``system_prompt`` object (also the -spf file's content)."""

    prompt: str = ""
    anti_prompt: str = ""
    assistant_name: str = ""


class GenerationOptions(ApiModel):
    """Every llama.cpp generation option (names and meaning as /completion takes them)."""

    temperature: float | None = None
    dynatemp_range: float | None = Field(None, ge=0)
    dynatemp_exponent: float | None = None
    top_k: Int32 | None = None
    top_p: float | None = None
    min_p: float | None = None
    typical_p: float | None = None
    tfs_z: float | None = None
    xtc_probability: float | None = Field(None, ge=0, le=1)
    xtc_threshold: float | None = None
    top_n_sigma: float | None = None
    n_predict: CountOrAll | None = None
    max_tokens: CountOrAll | None = None
    n_keep: CountOrAll | None = None
    stream: bool = False
    stop: list[str] | str | None = None
    repeat_penalty: float | None = Field(None, ge=0)
    repeat_last_n: CountOrAll | None = None
    penalize_nl: bool | None = None
    presence_penalty: float | None = None
    frequency_penalty: float | None = None
    penalty_prompt: str | list[JsonInt] | None = None
    dry_multiplier: float | None = Field(None, ge=0)
    dry_base: float | None = Field(None, ge=0)
    dry_allowed_length: Count | None = None
    dry_penalty_last_n: CountOrAll | None = None
    dry_sequence_breakers: list[str] | None = None
    mirostat: JsonInt | None = Field(None, ge=0, le=2)
    mirostat_tau: float | None = None
    mirostat_eta: float | None = None
    grammar: str | None = None
    json_schema: dict[str, Any] | bool | None = None
    seed: JsonInt | None = Field(None, ge=-(2**63), le=2**64 - 1)
    ignore_eos: bool | None = None
    logit_bias: list[Any] | dict[str, Any] | None = None
    n_probs: JsonInt | None = Field(None, ge=0, le=1024)
    min_keep: Count | None = None
    image_data: list[Any] | None = None
    id_slot: JsonInt | None = Field(None, ge=-1, le=2**31 - 1)
    cache_prompt: bool | None = None
    system_prompt: str | SystemPromptObject | None = None
    anti_prompt: str | None = None
    assistant_name: str | None = None
    samplers: list[str] | str | None = None
    t_max_predict_ms: Count | None = None
    return_tokens: bool = False
    lora: list[LoraScale] | None = None
    timings_per_token: bool | None = None
    return_progress: bool | None = None
