"""Which model is served, under which names, with which adapters."""

from __future__ import annotations

from functools import partial
from pathlib import Path
from typing import Any

from pydantic import field_validator, model_validator

from ._fields import MODEL, Group, option, split_list

__all__ = ["ModelSettings"]

_opt = partial(option, group=MODEL)


class ModelSettings(Group):
    model: Path | None = _opt("-m", "--model", env="LLAMA_ARG_MODEL", default=None, metavar="FNAME")
    """Path of the GGUF model file. Default: the bundled default model
    (llama_ffi.default_model_path())."""
    model_url: str | None = _opt(
        "-mu", "--model-url", env="LLAMA_ARG_MODEL_URL", default=None, metavar="MODEL_URL")
    """Download the model from this URL (kept in the cache directory) when --model is not given."""
    hf_repo: str | None = _opt(
        "-hf", "-hfr", "--hf-repo", env="LLAMA_ARG_HF_REPO", default=None, metavar="REPO")
    """Hugging Face repository (user/name) to download the model from; use with --hf-file."""
    hf_file: str | None = _opt(
        "-hff", "--hf-file", env="LLAMA_ARG_HF_FILE", default=None, metavar="FILE")
    """File inside --hf-repo to download."""
    hf_token: str | None = _opt("-hft", "--hf-token", env="HF_TOKEN", default=None, metavar="TOKEN")
    """Hugging Face access token for gated repositories (never logged)."""
    offline: bool = _opt("--offline", env="LLAMA_ARG_OFFLINE", default=False)
    """Never touch the network: a model given by URL or repository must already be in the download
    cache."""
    aliases: list[str] = _opt(
        "-a", "--alias", env="LLAMA_ARG_ALIAS", default_factory=list, metavar="NAME[,NAME...]")
    """Names of the model in API responses, comma-separated; the first is the one reported (default:
    the model file path). Python callers may also pass alias=...; settings.alias is the first
    name."""
    tags: list[str] = _opt(
        "--tags", env="LLAMA_ARG_TAGS", default_factory=list, metavar="TAG[,TAG...]")
    """Tags of the model, comma-separated (informational)."""
    lora: list[Path] = _opt("--lora", default_factory=list, metavar="FNAME")
    """LoRA adapter file to apply at scale 1 (repeatable, or comma-separated). GET/POST
    /lora-adapters list them and set their scales."""
    lora_scaled: list[tuple[Path, float]] = _opt(
        "--lora-scaled", default_factory=list, metavar="FNAME:SCALE")
    """LoRA adapter with its scale, FNAME:SCALE (repeatable, or comma-separated)."""
    lora_init_without_apply: bool = _opt("--lora-init-without-apply", default=False)
    """Load the LoRA adapters at scale 0; apply them later through POST /lora-adapters or a
    request's `lora` field."""
    lora_base: Path | None = _opt("--lora-base", default=None, metavar="FNAME")
    """Accepted for compatibility and ignored: libllama applies an adapter to the loaded model."""
    system_prompt_file: Path | None = _opt(
        "-spf", "--system-prompt-file", default=None, metavar="FNAME")
    """JSON file {"prompt", "anti_prompt", "assistant_name"} (or a plain text file) with the system
    prompt shared by all slots."""

    @model_validator(mode="before")
    @classmethod
    def _alias_keyword(cls, data: Any) -> Any:
        # ``alias`` is the seed's single name; ``aliases`` holds every name.  An explicit
        # ``alias`` (a keyword, or an override over a dumped settings) replaces the list.
        if isinstance(data, dict) and "alias" in data:
            data = dict(data)
            alias = data.pop("alias")
            data["aliases"] = [] if alias is None else alias
        return data

    @field_validator("aliases", "tags", mode="before")
    @classmethod
    def _name_list(cls, value: Any) -> Any:
        names = split_list(value)
        if isinstance(names, list):
            return list(dict.fromkeys(names))  # upstream keeps a set: each name once
        return names

    @field_validator("lora", mode="before")
    @classmethod
    def _path_list(cls, value: Any) -> Any:
        if isinstance(value, Path):
            value = str(value)
        if isinstance(value, list):
            value = [str(item) if isinstance(item, Path) else item for item in value]
        return split_list(value)

    @field_validator("lora_scaled", mode="before")
    @classmethod
    def _scaled_list(cls, value: Any) -> Any:
        split = split_list(value)  # as every list flag: commas, CSV quoting
        if not isinstance(split, list):
            return split
        out: list[Any] = []
        for part in split:
            if isinstance(part, str):
                path, sep, scale = part.rpartition(":")
                if not sep or not path:
                    raise ValueError(f"{part!r} is not FNAME:SCALE")
                part = (path, scale)
            out.append(part)
        return out

    @model_validator(mode="after")
    def _repo_and_file(self) -> "ModelSettings":
        if self.hf_file and not self.hf_repo:
            raise ValueError("--hf-file needs --hf-repo")
        return self

    @property
    def alias(self) -> str | None:
        """The name reported for the model: the first of ``aliases`` (None: the file path)."""
        return self.aliases[0] if self.aliases else None

    @alias.setter
    def alias(self, value: str | list[str] | None) -> None:
        self.aliases = [] if value is None else value  # type: ignore[assignment]
