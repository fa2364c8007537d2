"""Positions: RoPE scaling, YaRN and self-extend (group attention)."""

from __future__ import annotations

from functools import partial
from typing import Literal


from ._fields import PERF, Finite, Group, option

__all__ = ["RopeSettings"]

_opt = partial(option, group=PERF)


class RopeSettings(Group):
    grp_attn_n: int = _opt(
        "-gan", "--grp-attn-n", env="LLAMA_ARG_GRP_ATTN_N", default=1, ge=1, le=2**20, metavar="N")
    """Self-extend group attention factor (1 = disabled)."""
    grp_attn_w: int = _opt(
        "-gaw", "--grp-attn-w", env="LLAMA_ARG_GRP_ATTN_W", default=512, ge=1, le=2**31 - 1,
        metavar="N")
    """Self-extend group attention width."""
    rope_scaling: Literal["none", "linear", "yarn"] | None = _opt(
        "--rope-scaling", env="LLAMA_ARG_ROPE_SCALING_TYPE", default=None,
        metavar="{none,linear,yarn}")
    """RoPE scaling method (default: from the model)."""
    rope_scale: Finite = _opt(
        "--rope-scale", env="LLAMA_ARG_ROPE_SCALE", default=0.0, ge=0.0, metavar="N")
    """RoPE context scaling factor: sets rope-freq-scale to 1/N (0 = unset)."""
    rope_freq_base: Finite = _opt(
        "--rope-freq-base", env="LLAMA_ARG_ROPE_FREQ_BASE", default=0.0, ge=0.0, metavar="N")
    """RoPE base frequency (0 = from the model)."""
    rope_freq_scale: Finite = _opt(
        "--rope-freq-scale", env="LLAMA_ARG_ROPE_FREQ_SCALE", default=0.0, ge=0.0, metavar="N")
    """RoPE frequency scaling factor; expands the context by 1/N (0 = from the model)."""
    yarn_orig_ctx: int = _opt(
        "--yarn-orig-ctx", env="LLAMA_ARG_YARN_ORIG_CTX", default=0, ge=0, le=2**31 - 1,
        metavar="N")
    """YaRN: original context size of the model (0 = the training context)."""
    yarn_ext_factor: Finite = _opt(
        "--yarn-ext-factor", env="LLAMA_ARG_YARN_EXT_FACTOR", default=-1.0, metavar="N")
    """YaRN: extrapolation mix factor (0.0 = full interpolation, negative = from the model, usually
    1.0)."""
    yarn_attn_factor: Finite = _opt(
        "--yarn-attn-factor", env="LLAMA_ARG_YARN_ATTN_FACTOR", default=-1.0, metavar="N")
    """YaRN: scale of sqrt(t) / attention magnitude (negative = from the model, usually 1.0)."""
    yarn_beta_slow: Finite = _opt(
        "--yarn-beta-slow", env="LLAMA_ARG_YARN_BETA_SLOW", default=-1.0, metavar="N")
    """YaRN: high correction dim or alpha (negative = from the model, usually 1.0)."""
    yarn_beta_fast: Finite = _opt(
        "--yarn-beta-fast", env="LLAMA_ARG_YARN_BETA_FAST", default=-1.0, metavar="N")
    """YaRN: low correction dim or beta (negative = from the model, usually 32.0)."""
