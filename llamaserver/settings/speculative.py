"""Settings of speculative decoding (llama-server's --spec-* flags that apply here)."""

from __future__ import annotations

from functools import partial
from typing import Any

from pydantic import field_validator

from ._fields import PERF, ExistingFile, Group, LayerCount, option, split_list

__all__ = ["SpeculativeSettings", "NGRAM_TYPES", "DRAFT_TYPES"]

_opt = partial(option, group=PERF)

NGRAM_TYPES = ("ngram-simple", "ngram-map-k", "ngram-map-k4v", "ngram-mod", "ngram-cache")
DRAFT_TYPES = ("draft-simple", "draft-eagle3", "draft-mtp", "draft-dflash", "draft-dspark")


class SpeculativeSettings(Group):
    spec_type: list[str] = _opt(
        "--spec-type", env="LLAMA_ARG_SPEC_TYPE", default_factory=lambda: ["none"], metavar="TYPES")
    """Speculative decoding, comma-separated (llama-server's names): ngram-* drafts from n-grams of
    the prompt and the text so far (one drafter serves every ngram name), draft-* with
    --model-draft; none: off."""
    model_draft: ExistingFile = _opt(
        "--spec-draft-model", "-md", "--model-draft", env="LLAMA_ARG_SPEC_DRAFT_MODEL",
        default=None, metavar="FNAME")
    """A small model with the same vocabulary that drafts tokens."""
    n_gpu_layers_draft: LayerCount = _opt(
        "--spec-draft-ngl", "-ngld", "--gpu-layers-draft", "--n-gpu-layers-draft",
        env="LLAMA_ARG_N_GPU_LAYERS_DRAFT", default=0, ge=-1, le=2**31 - 1, metavar="N")
    """Layers of the draft model on the GPU (-1, 'all' or 'auto': all of them)."""
    threads_draft: int | None = _opt(
        "--spec-draft-threads", "-td", "--threads-draft", default=None, ge=1, le=1024, metavar="N")
    """Threads of the draft model (default: --threads)."""
    threads_batch_draft: int | None = _opt(
        "--spec-draft-threads-batch", "-tbd", "--threads-batch-draft", default=None, ge=1, le=1024,
        metavar="N")
    """Threads of the draft model for catching up on a prompt (default: --threads-draft)."""
    spec_draft_n_max: int = _opt(
        "--spec-draft-n-max", env="LLAMA_ARG_SPEC_DRAFT_N_MAX", default=16, ge=0, le=1024,
        metavar="N")
    """Most draft tokens checked in one step."""
    spec_draft_n_min: int = _opt(
        "--spec-draft-n-min", env="LLAMA_ARG_SPEC_DRAFT_N_MIN", default=0, ge=0, le=1024,
        metavar="N")
    """Fewest draft tokens worth checking."""
    spec_draft_p_min: float = _opt(
        "--spec-draft-p-min", "--draft-p-min", env="LLAMA_ARG_SPEC_DRAFT_P_MIN", default=0.0,
        ge=0.0, le=1.0, metavar="P")
    """A draft model's draft stops at a token it gives less than this probability."""

    @field_validator("spec_type", mode="before")
    @classmethod
    def _types(cls, value: Any) -> Any:
        names = split_list(value)
        if isinstance(names, list):
            known = ("none", *NGRAM_TYPES, *DRAFT_TYPES)
            unknown = [n for n in names if n not in known]
            if unknown:
                raise ValueError(f"unknown type {unknown[0]!r}; known: {', '.join(known)}")
        return names

    @field_validator("threads_draft", "threads_batch_draft", mode="before")
    @classmethod
    def _draft_default_threads(cls, value: Any) -> Any:
        return None if value in (-1, "-1") else value
    @property
    def ngram_speculation(self) -> bool:
        return any(t in NGRAM_TYPES for t in self.spec_type)

    @property
    def draft_speculation(self) -> bool:
        """A draft model drafts: given one, unless --spec-type names only n-gram drafting
        (or none)."""
        if self.model_draft is None:
            return False
        types = [t for t in self.spec_type if t != "none"]
        return not types or any(t in DRAFT_TYPES for t in types)
