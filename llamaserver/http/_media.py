"""Media a request brings (images, audio): decoded here, once, into bytes for the projector.

Forms: base64 (the seed's ``image_data``, upstream's ``multimodal_data``, OpenAI's
``input_audio``), ``data:`` URLs (OpenAI's ``image_url``), ``http(s)://`` URLs only with
``--allow-remote-media`` (bounded in bytes and time), and ``file://`` URLs relative to
``--media-path``.  Every failure is a 400 that names the field.  Markers: the seed writes
``[img-N]`` for ``image_data`` id N, upstream the media marker; both become this server's own
marker (``/props`` ``media_marker``) before tokenizing.
"""

from __future__ import annotations

import base64
import binascii
import re
import urllib.parse
import urllib.request
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from ..engine import Engine
from ..settings import ServerSettings
from ._errors import invalid
from ._prompts import PromptInput

__all__ = ["MediaPolicy", "DEFAULT_MARKER", "decode_base64", "load_url", "seed_images",
           "with_marker", "require_projector", "decode_prompts"]

DEFAULT_MARKER = "<__media__>"  # libmtmd's default, what upstream's docs tell clients to write
_IMG = re.compile(r"\[img-(-?\d+)\]")


@dataclass(frozen=True)
class MediaPolicy:
    """Where media may come from, from the server's settings."""

    max_bytes: int
    allow_remote: bool
    timeout: float
    media_path: Path | None

    @classmethod
    def from_settings(cls, s: ServerSettings) -> MediaPolicy:
        return cls(s.media_max_bytes, s.allow_remote_media, s.media_timeout, s.media_path)


def require_projector(engine: Engine, field: str) -> str:
    """The engine's media marker; 400 when the server takes no media."""
    projector = engine.projector
    if projector is None:
        raise invalid(f"'{field}' holds media, but this server has no multimodal projector "
                      "(start it with --mmproj)")
    return projector.marker


def decode_base64(data: Any, field: str, policy: MediaPolicy) -> bytes:
    if not isinstance(data, str):
        raise invalid(f"'{field}' must be a base64 string")
    if len(data) > policy.max_bytes * 4 // 3 + 8:
        raise invalid(f"'{field}' is larger than {policy.max_bytes} bytes")
    try:
        return base64.b64decode(data, validate=True)
    except (binascii.Error, ValueError):
        raise invalid(f"'{field}' is not valid base64") from None


def load_url(url: Any, field: str, policy: MediaPolicy) -> bytes:
    """The bytes an ``image_url``-style URL names (blocking for remote ones)."""
    if not isinstance(url, str) or not url:
        raise invalid(f"'{field}' must be a URL string")
    if url.startswith("data:"):
        head, sep, body = url.partition(",")
        if not sep or not head.endswith(";base64"):
            raise invalid(f"'{field}' must be a base64 data URL (data:...;base64,...)")
        return decode_base64(body, field, policy)
    scheme = urllib.parse.urlsplit(url).scheme.lower()
    if scheme == "file":
        return _local_file(url, field, policy)
    if scheme in ("http", "https"):
        if not policy.allow_remote:
            raise invalid(f"'{field}': remote media URLs are off on this server (start it "
                          "with --allow-remote-media, or send a data URL)")
        return _fetch(url, field, policy)
    # upstream also takes bare base64 here
    return decode_base64(url, field, policy)


def _local_file(url: str, field: str, policy: MediaPolicy) -> bytes:
    if policy.media_path is None:
        raise invalid(f"'{field}': file URLs need --media-path")
    root = policy.media_path.resolve()
    path = (root / urllib.parse.unquote(urllib.parse.urlsplit(url).path).lstrip("/")).resolve()
    if root not in path.parents or not path.is_file():
        raise invalid(f"'{field}': no such file under --media-path")
    if path.stat().st_size > policy.max_bytes:
        raise invalid(f"'{field}' is larger than {policy.max_bytes} bytes")
    return path.read_bytes()


def _fetch(url: str, field: str, policy: MediaPolicy) -> bytes:
    request = urllib.request.Request(url, headers={"User-Agent": "llamaserver"})
    try:
        with urllib.request.urlopen(request, timeout=policy.timeout) as response:
            data = response.read(policy.max_bytes + 1)
    except (OSError, ValueError) as exc:
        raise invalid(f"'{field}': could not fetch {url[:200]}: {exc}") from None
    if len(data) > policy.max_bytes:
        raise invalid(f"'{field}' is larger than {policy.max_bytes} bytes")
    return data


def seed_images(prompt: str, image_data: list[Any], marker: str, policy: MediaPolicy
                ) -> tuple[str, list[bytes]]:
    """The seed's ``[img-N]`` references: the prompt with this server's marker in their place
    and the images in that order.  A reference without an image, or an image that is never
    referenced, is a 400."""
    by_id: dict[int, bytes] = {}
    for i, item in enumerate(image_data):
        where = f"image_data.{i}"
        if not isinstance(item, dict) or isinstance(item.get("id"), bool) or not isinstance(
                item.get("id"), int):
            raise invalid(f"'{where}' must be {{\"data\": base64, \"id\": int}}")
        by_id[item["id"]] = decode_base64(item.get("data"), f"{where}.data", policy)
    media: list[bytes] = []
    used: set[int] = set()

    def swap(match: re.Match[str]) -> str:
        key = int(match.group(1))
        if key not in by_id:
            raise invalid(f"'prompt' refers to [img-{key}], which is not in 'image_data'")
        used.add(key)
        media.append(by_id[key])
        return marker

    text = _IMG.sub(swap, prompt)
    unused = sorted(set(by_id) - used)
    if unused:
        raise invalid(f"'image_data' id {unused[0]} has no [img-{unused[0]}] in 'prompt'")
    return text, media


def with_marker(text: str, n_media: int, marker: str, field: str) -> str:
    """Upstream's ``multimodal_data``: the documented default marker (or this server's own)
    once per item."""
    if marker != DEFAULT_MARKER:
        text = text.replace(DEFAULT_MARKER, marker)
    if text.count(marker) != n_media:
        raise invalid(f"'{field}' has {text.count(marker)} media marker(s) "
                      f"({DEFAULT_MARKER}) for {n_media} item(s) of multimodal_data")
    return text


def decode_prompts(prompts: list[PromptInput], engine: Engine, policy: MediaPolicy,
                   field: str = "prompt", image_data: list[Any] | None = None
                   ) -> list[PromptInput]:
    """Prompts with their media as bytes and this server's marker in their text (blocking:
    remote URLs are fetched).  ``image_data`` is the seed's, for a single text prompt."""
    if image_data:
        if len(prompts) != 1 or not isinstance(prompts[0].value, str) or prompts[0].media:
            raise invalid("'image_data' goes with a single text 'prompt'")
        marker = require_projector(engine, "image_data")
        text, media = seed_images(prompts[0].value, image_data, marker, policy)
        return [PromptInput(text, media)]
    out = []
    for i, prompt in enumerate(prompts):
        if not prompt.media:
            out.append(prompt)
            continue
        where = f"{field}.{i}" if len(prompts) > 1 else field
        marker = require_projector(engine, f"{where}.multimodal_data")
        if not isinstance(prompt.value, str):
            raise invalid(f"'{where}.prompt_string' must be text when it has multimodal_data")
        media = [decode_base64(item, f"{where}.multimodal_data.{k}", policy)
                 for k, item in enumerate(prompt.media)]
        out.append(PromptInput(with_marker(prompt.value, len(media), marker,
                                           f"{where}.prompt_string"), media))
    return out
