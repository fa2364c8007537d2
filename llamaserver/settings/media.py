"""Settings of multimodal input: the projector and where media may come from."""

from __future__ import annotations

from functools import partial

from ._fields import MODEL, ExistingFile, Group, option

__all__ = ["MediaSettings"]

_opt = partial(option, group=MODEL)


class MediaSettings(Group):
    mmproj: ExistingFile = _opt(
        "-mm", "--mmproj", env="LLAMA_ARG_MMPROJ", default=None, metavar="MMPROJ_FILE")
    """Multimodal projector file (an mmproj GGUF made for the model): images (and audio, if the
    projector takes it) in prompts."""
    mmproj_url: str | None = _opt(
        "-mmu", "--mmproj-url", env="LLAMA_ARG_MMPROJ_URL", default=None, metavar="URL")
    """Download the projector from this URL (kept in the cache directory) when --mmproj is not
    given."""
    mmproj_offload: bool = _opt(
        "--mmproj-offload", env="LLAMA_ARG_MMPROJ_OFFLOAD", negative=("--no-mmproj-offload",),
        default=True)
    """Run the projector on the GPU when the library has one."""
    image_min_tokens: int | None = _opt(
        "--image-min-tokens", env="LLAMA_ARG_IMAGE_MIN_TOKENS", default=None, ge=1, le=1_000_000,
        metavar="N")
    """Fewest tokens an image becomes (projectors with dynamic resolution; default: the
    projector's)."""
    image_max_tokens: int | None = _opt(
        "--image-max-tokens", env="LLAMA_ARG_IMAGE_MAX_TOKENS", default=None, ge=1, le=1_000_000,
        metavar="N")
    """Most tokens an image becomes (projectors with dynamic resolution; default: the
    projector's)."""
    allow_remote_media: bool = _opt("--allow-remote-media", default=False)
    """Let requests name media by http(s) URL (image_url parts); the server then fetches them,
    within --media-max-bytes and --media-timeout. Off: only data URLs and base64."""
    media_max_bytes: int = _opt(
        "--media-max-bytes", default=20 * 1024 * 1024, ge=1024, le=1 << 31, metavar="N")
    """Largest encoded image or audio clip a request may carry or have fetched, in bytes."""
    media_timeout: float = _opt("--media-timeout", default=10.0, gt=0, le=600, metavar="SECONDS")
    """Seconds a remote media fetch may take."""
