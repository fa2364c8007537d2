"""Settings of multimodal input: the projector and where media may come from."""

from __future__ import annotations

from pathlib import Path

from pydantic import BaseModel, ConfigDict, Field, field_validator

from ._fields import MODEL, cli, existing_file

__all__ = ["MediaSettings"]


class MediaSettings(BaseModel):
    model_config = ConfigDict(protected_namespaces=(), extra="forbid", validate_assignment=True)

    mmproj: Path | None = Field(
        None, description="Multimodal projector file (an mmproj GGUF made for the model): "
        "images (and audio, if the projector takes it) in prompts.",
        json_schema_extra=cli("-mm", "--mmproj", env="LLAMA_ARG_MMPROJ", group=MODEL,
                              metavar="MMPROJ_FILE"))
    mmproj_url: str | None = Field(
        None, description="Download the projector from this URL (kept in the cache "
        "directory) when --mmproj is not given.",
        json_schema_extra=cli("-mmu", "--mmproj-url", env="LLAMA_ARG_MMPROJ_URL", group=MODEL,
                              metavar="URL"))
    mmproj_offload: bool = Field(
        True, description="Run the projector on the GPU when the library has one.",
        json_schema_extra=cli("--mmproj-offload", negative=("--no-mmproj-offload",),
                              env="LLAMA_ARG_MMPROJ_OFFLOAD", group=MODEL))
    image_min_tokens: int | None = Field(
        None, ge=1, le=1_000_000, description="Fewest tokens an image becomes (projectors with "
        "dynamic resolution; default: the projector's).",
        json_schema_extra=cli("--image-min-tokens", env="LLAMA_ARG_IMAGE_MIN_TOKENS",
                              group=MODEL, metavar="N"))
    image_max_tokens: int | None = Field(
        None, ge=1, le=1_000_000, description="Most tokens an image becomes (projectors with "
        "dynamic resolution; default: the projector's).",
        json_schema_extra=cli("--image-max-tokens", env="LLAMA_ARG_IMAGE_MAX_TOKENS",
                              group=MODEL, metavar="N"))
    allow_remote_media: bool = Field(
        False, description="Let requests name media by http(s) URL (image_url parts); the "
        "server then fetches them, within --media-max-bytes and --media-timeout. Off: only "
        "data URLs and base64.",
        json_schema_extra=cli("--allow-remote-media", group=MODEL))
    media_max_bytes: int = Field(
        20 * 1024 * 1024, ge=1024, le=1 << 31, description="Largest encoded image or audio "
        "clip a request may carry or have fetched, in bytes.",
        json_schema_extra=cli("--media-max-bytes", group=MODEL, metavar="N"))
    media_timeout: float = Field(
        10.0, gt=0, le=600, description="Seconds a remote media fetch may take.",
        json_schema_extra=cli("--media-timeout", group=MODEL, metavar="SECONDS"))

    @field_validator("mmproj")
    @classmethod
    def _projector_exists(cls, value: Path | None) -> Path | None:
        return existing_file(value)
