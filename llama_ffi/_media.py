"""What encoded media bytes are, read from their headers before any C decoder sees them.

libmtmd's helper hands unknown bytes to stb_image, then (in builds with video support) to an
``ffmpeg`` child process; stb_image allocates whatever a header claims (a 100-byte PNG can
claim 30000 x 30000 pixels, 2.7 GB decoded), and the audio decoder sizes its buffer from a
header's sample count. So the format and the size are settled here, in Python, first: only
the formats below reach libmtmd, and only within ``MediaLimits``.
"""

from __future__ import annotations

import dataclasses
import struct

from llama_ffi._errors import MediaError

IMAGE_FORMATS = ("png", "jpeg", "gif", "bmp")
AUDIO_FORMATS = ("wav", "mp3", "flac")


@dataclasses.dataclass(frozen=True)
class MediaLimits:
    """Bounds on one media input: encoded bytes, decoded pixels, audio seconds."""

    max_bytes: int = 20 * 1024 * 1024
    max_pixels: int = 4096 * 4096          # decoded RGB is 3 bytes a pixel: 48 MiB
    max_audio_seconds: float = 600.0

    def __post_init__(self) -> None:
        if self.max_bytes < 1 or self.max_pixels < 1 or not self.max_audio_seconds > 0:
            raise ValueError("media limits must be positive")


@dataclasses.dataclass(frozen=True)
class MediaInfo:
    kind: str                        # "image" or "audio"
    format: str                      # one of IMAGE_FORMATS or AUDIO_FORMATS
    width: int = 0                   # images
    height: int = 0
    seconds: float | None = None     # audio, when the header says (not for MP3)


def _image(fmt: str, width: int, height: int) -> MediaInfo:
    if width <= 0 or height <= 0:
        raise MediaError(f"the {fmt.upper()} header gives a size of {width} x {height} pixels")
    return MediaInfo("image", fmt, width, height)


def _jpeg_size(data: bytes) -> tuple[int, int]:
    """(width, height) from the first start-of-frame segment."""
    i = 2
    while i + 4 <= len(data):
        if data[i] != 0xFF:
            raise MediaError("the JPEG data is corrupt (no marker where one is due)")
        marker = data[i + 1]
        if marker == 0xFF:                      # fill byte
            i += 1
            continue
        if marker in (0x01, *range(0xD0, 0xD8)):  # markers without a length
            i += 2
            continue
        length = int.from_bytes(data[i + 2 : i + 4], "big")
        if 0xC0 <= marker <= 0xCF and marker not in (0xC4, 0xC8, 0xCC):
            if i + 9 > len(data):
                break
            height = int.from_bytes(data[i + 5 : i + 7], "big")
            width = int.from_bytes(data[i + 7 : i + 9], "big")
            return width, height
        if marker == 0xDA or length < 2:        # image data before any frame header
            break
        i += 2 + length
    raise MediaError("the JPEG data has no frame header")


def _bmp_size(data: bytes) -> tuple[int, int]:
    if len(data) < 26:
        raise MediaError("the BMP data is truncated")
    header = int.from_bytes(data[14:18], "little")
    if header == 12:                            # BITMAPCOREHEADER: 16-bit sizes
        return int.from_bytes(data[18:20], "little"), int.from_bytes(data[20:22], "little")
    width, height = struct.unpack_from("<ii", data, 18)
    return width, abs(height)                   # a negative height is a top-down bitmap


def _wav_seconds(data: bytes) -> float:
    rate = block = 0
    i = 12
    while i + 8 <= len(data):
        tag, size = data[i : i + 4], int.from_bytes(data[i + 4 : i + 8], "little")
        if tag == b"fmt " and i + 22 <= len(data):
            rate = int.from_bytes(data[i + 12 : i + 16], "little")
            block = int.from_bytes(data[i + 20 : i + 22], "little")
        elif tag == b"data":
            if not rate or not block:
                break
            # a header may claim more data than there is: the decoder reads what is there
            return min(size, len(data) - i - 8) / (rate * block)
        i += 8 + size + (size & 1)
    raise MediaError("the WAV data has no format or data chunk")


def _flac_seconds(data: bytes) -> float | None:
    if len(data) < 8 + 34 or data[4] & 0x7F != 0:  # STREAMINFO comes first
        raise MediaError("the FLAC data has no STREAMINFO block")
    info = int.from_bytes(data[8 + 10 : 8 + 18], "big")
    rate = info >> 44
    total = info & ((1 << 36) - 1)
    if not rate:
        raise MediaError("the FLAC header gives a sample rate of 0")
    return total / rate if total else None     # 0: unknown, bounded by the byte limit


def sniff(data: bytes) -> MediaInfo:
    """The format and size that ``data``'s header declares; ``MediaError`` if it is none of
    the supported image (PNG, JPEG, GIF, BMP) or audio (WAV, MP3, FLAC) formats."""
    head = bytes(data[:32])
    if head.startswith(b"\x89PNG\r\n\x1a\n"):
        if len(data) < 24 or head[12:16] != b"IHDR":
            raise MediaError("the PNG data is truncated (no IHDR chunk)")
        return _image("png", *struct.unpack_from(">II", data, 16))
    if head.startswith(b"\xff\xd8\xff"):
        return _image("jpeg", *_jpeg_size(bytes(data[: 1 << 20])))
    if head[:6] in (b"GIF87a", b"GIF89a"):
        if len(data) < 10:
            raise MediaError("the GIF data is truncated")
        return _image("gif", *struct.unpack_from("<HH", data, 6))
    if head.startswith(b"BM"):
        return _image("bmp", *_bmp_size(data))
    if head.startswith(b"RIFF") and head[8:12] == b"WAVE":
        return MediaInfo("audio", "wav", seconds=_wav_seconds(bytes(data[: 1 << 16])))
    if head.startswith(b"fLaC"):
        return MediaInfo("audio", "flac", seconds=_flac_seconds(data))
    if head.startswith(b"ID3") or (len(head) >= 2 and head[0] == 0xFF and head[1] & 0xE0 == 0xE0):
        return MediaInfo("audio", "mp3")
    if head.startswith(b"RIFF") and head[8:12] == b"WEBP":
        raise MediaError("WebP images are not supported (libmtmd decodes them with ffmpeg); "
                         "convert to PNG or JPEG")
    raise MediaError("the data is not a supported image (PNG, JPEG, GIF, BMP) or audio (WAV, MP3, FLAC)")


def check(data: bytes, limits: MediaLimits) -> MediaInfo:
    """``sniff(data)``, after checking its byte size, and its pixels or seconds, against ``limits``."""
    if not data:
        raise MediaError("the media data is empty")
    if len(data) > limits.max_bytes:
        raise MediaError(f"the media data is {len(data)} bytes; the limit is {limits.max_bytes}")
    info = sniff(data)
    if info.kind == "image" and info.width * info.height > limits.max_pixels:
        raise MediaError(f"the image is {info.width} x {info.height} pixels; "
                         f"the limit is {limits.max_pixels} pixels")
    if info.seconds is not None and info.seconds > limits.max_audio_seconds:
        raise MediaError(f"the audio is {info.seconds:.1f} s long; the limit is {limits.max_audio_seconds} s")
    return info
