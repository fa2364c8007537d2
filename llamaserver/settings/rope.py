"""Positions: RoPE scaling, YaRN and self-extend (group attention)."""

from __future__ import annotations

from typing import Literal

from pydantic import Field

from ._fields import PERF, Finite, Group, cli

__all__ = ["RopeSettings"]


class RopeSettings(Group):
    grp_attn_n: int = Field(
        1, ge=1, le=2**20, description="Self-extend group attention factor (1 = disabled).",
        json_schema_extra=cli("-gan", "--grp-attn-n", env="LLAMA_ARG_GRP_ATTN_N", group=PERF,
                              metavar="N"))
    grp_attn_w: int = Field(
        512, ge=1, le=2**31 - 1, description="Self-extend group attention width.",
        json_schema_extra=cli("-gaw", "--grp-attn-w", env="LLAMA_ARG_GRP_ATTN_W", group=PERF,
                              metavar="N"))
    rope_scaling: Literal["none", "linear", "yarn"] | None = Field(
        None, description="RoPE scaling method (default: from the model).",
        json_schema_extra=cli("--rope-scaling", env="LLAMA_ARG_ROPE_SCALING_TYPE",
                              group=PERF, metavar="{none,linear,yarn}"))
    rope_scale: Finite = Field(
        0.0, ge=0.0, description="RoPE context scaling factor: sets rope-freq-scale to 1/N "
        "(0 = unset).",
        json_schema_extra=cli("--rope-scale", env="LLAMA_ARG_ROPE_SCALE", group=PERF,
                              metavar="N"))
    rope_freq_base: Finite = Field(
        0.0, ge=0.0, description="RoPE base frequency (0 = from the model).",
        json_schema_extra=cli("--rope-freq-base", env="LLAMA_ARG_ROPE_FREQ_BASE", group=PERF,
                              metavar="N"))
    rope_freq_scale: Finite = Field(
        0.0, ge=0.0, description="RoPE frequency scaling factor; expands the context by 1/N "
        "(0 = from the model).",
        json_schema_extra=cli("--rope-freq-scale", env="LLAMA_ARG_ROPE_FREQ_SCALE",
                              group=PERF, metavar="N"))
    yarn_orig_ctx: int = Field(
        0, ge=0, le=2**31 - 1, description="YaRN: original context size of the model (0 = "
        "the training context).",
        json_schema_extra=cli("--yarn-orig-ctx", env="LLAMA_ARG_YARN_ORIG_CTX", group=PERF,
                              metavar="N"))
    yarn_ext_factor: Finite = Field(
        -1.0, description="YaRN: extrapolation mix factor (0.0 = full interpolation, negative "
        "= from the model, usually 1.0).",
        json_schema_extra=cli("--yarn-ext-factor", env="LLAMA_ARG_YARN_EXT_FACTOR",
                              group=PERF, metavar="N"))
    yarn_attn_factor: Finite = Field(
        -1.0, description="YaRN: scale of sqrt(t) / attention magnitude (negative = from the "
        "model, usually 1.0).",
        json_schema_extra=cli("--yarn-attn-factor", env="LLAMA_ARG_YARN_ATTN_FACTOR",
                              group=PERF, metavar="N"))
    yarn_beta_slow: Finite = Field(
        -1.0, description="YaRN: high correction dim or alpha (negative = from the model, "
        "usually 1.0).",
        json_schema_extra=cli("--yarn-beta-slow", env="LLAMA_ARG_YARN_BETA_SLOW", group=PERF,
                              metavar="N"))
    yarn_beta_fast: Finite = Field(
        -1.0, description="YaRN: low correction dim or beta (negative = from the model, "
        "usually 32.0).",
        json_schema_extra=cli("--yarn-beta-fast", env="LLAMA_ARG_YARN_BETA_FAST", group=PERF,
                              metavar="N"))
