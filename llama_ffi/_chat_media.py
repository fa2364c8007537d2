"""OpenAI chat content parts with media, turned into text with markers plus the media bytes.

``{"type": "image_url", "image_url": {"url": "data:image/png;base64,..."}}`` and
``{"type": "input_audio", "input_audio": {"data": "<base64>", "format": "wav"}}`` parts become
a marker in the message's text, and their decoded bytes are returned in order. Text parts are
joined as libllama's chat code joins them: a newline between two text parts, none next to a
marker. Only ``data:`` URLs are read: this library fetches nothing.
"""

from __future__ import annotations

import base64
import binascii
from typing import Any, Mapping, Sequence

from llama_ffi._errors import MediaError

__all__ = ["split_media_messages", "decode_data_url"]


def _b64(text: Any, what: str, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise MediaError(f"{what} must be a base64 string")
    if len(text) // 4 * 3 > max_bytes + 3:
        raise MediaError(f"{what} is over the limit of {max_bytes} bytes")
    try:
        return base64.b64decode(text, validate=True)
    except (binascii.Error, ValueError) as exc:
        raise MediaError(f"{what} is not valid base64") from exc


def decode_data_url(url: Any, max_bytes: int) -> bytes:
    """The bytes of a ``data:[<type>];base64,<data>`` URL (``MediaError`` for any other URL)."""
    if not isinstance(url, str) or not url.startswith("data:"):
        shown = url[:40] + "..." if isinstance(url, str) and len(url) > 40 else url
        raise MediaError(f"only data: URLs are accepted for media, not {shown!r}")
    header, sep, payload = url.partition(",")
    if not sep or not header.endswith(";base64"):
        raise MediaError("a media data: URL must be base64 (data:<type>;base64,<data>)")
    return _b64(payload, "the data: URL", max_bytes)


def _part_media(part: Mapping[str, Any], kind: str, max_bytes: int) -> bytes:
    if kind == "image_url":
        image = part.get("image_url")
        url = image.get("url") if isinstance(image, Mapping) else image
        return decode_data_url(url, max_bytes)
    audio = part.get("input_audio")
    if not isinstance(audio, Mapping):
        raise MediaError("an input_audio part needs {'data': <base64>, 'format': 'wav'|'mp3'}")
    return _b64(audio.get("data"), "input_audio data", max_bytes)


def split_media_messages(messages: Sequence[Mapping[str, Any]], marker: str, *,
                         max_bytes: int = 20 * 1024 * 1024) -> tuple[list[dict[str, Any]], list[bytes]]:
    """``messages`` with every list content joined into text, ``marker`` in place of each
    image/audio part, and the media bytes in the order of their markers."""
    out: list[dict[str, Any]] = []
    media: list[bytes] = []
    for message in messages:
        content = message.get("content")
        if not isinstance(content, list):
            out.append(dict(message))
            continue
        text = ""
        last_was_marker = False
        for part in content:
            kind = part.get("type") if isinstance(part, Mapping) else None
            if kind == "text":
                piece = part.get("text")
                if not isinstance(piece, str):
                    raise ValueError("a text content part needs a string 'text'")
                text += ("\n" if text and not last_was_marker else "") + piece
                last_was_marker = False
            elif kind in ("image_url", "input_audio"):
                media.append(_part_media(part, kind, max_bytes))
                text += marker
                last_was_marker = True
            else:
                raise ValueError(f"unsupported content part type {kind!r} (text, image_url, input_audio)")
        out.append({**message, "content": text})
    return out, media
