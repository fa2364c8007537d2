"""Media headers read in Python before any C decoder sees the bytes (llama_ffi._media)."""

from __future__ import annotations

import struct
from pathlib import Path

import pytest

import llama_ffi
from llama_ffi import MediaError, MediaLimits
from llama_ffi._chat_media import split_media_messages
from llama_ffi._media import check, sniff

TEST_JPEG = Path(llama_ffi.native_manifest()["source_dir"]) / "tools/mtmd/test-1.jpeg"


def image(data: bytes) -> tuple[str, str, int, int]:
    info = sniff(data)
    return info.kind, info.format, info.width, info.height


def test_image_sizes_come_from_the_headers(make_png) -> None:
    assert image(TEST_JPEG.read_bytes()) == ("image", "jpeg", 640, 488)
    assert image(make_png(7, 3)) == ("image", "png", 7, 3)
    assert image(b"GIF89a" + struct.pack("<HH", 300, 200) + bytes(8)) == ("image", "gif", 300, 200)
    bmp = b"BM" + bytes(12) + struct.pack("<Iii", 40, 20, -10) + bytes(20)
    assert image(bmp) == ("image", "bmp", 20, 10)  # negative height: top-down rows


def test_audio_durations_come_from_the_headers() -> None:
    fmt = struct.pack("<HHIIHH", 1, 1, 16000, 32000, 2, 16)
    wav = b"RIFF" + bytes(4) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 64000) + bytes(64000)
    assert sniff(wav).seconds == pytest.approx(2.0)
    # STREAMINFO: 44.1 kHz, 441000 samples -> 10 s
    info = bytes(10) + ((44100 << 44) | 441000).to_bytes(8, "big") + bytes(16)
    assert sniff(b"fLaC" + b"\x80\x00\x00\x22" + info).seconds == pytest.approx(10.0)
    assert sniff(b"ID3\x04" + bytes(20)).format == "mp3"


def test_limits_are_checked_before_decoding(make_png) -> None:
    limits = MediaLimits(max_bytes=10_000, max_pixels=64, max_audio_seconds=1.0)
    with pytest.raises(MediaError, match="9 x 9 pixels"):
        check(make_png(9, 9), limits)
    with pytest.raises(MediaError, match="bytes; the limit"):
        check(b"\x89PNG" + bytes(20_000), limits)
    fmt = struct.pack("<HHIIHH", 1, 1, 8000, 16000, 2, 16)
    wav = b"RIFF" + bytes(4) + b"WAVEfmt " + struct.pack("<I", 16) + fmt + b"data" + struct.pack("<I", 9000) + bytes(9000)
    assert check(wav, limits).seconds == pytest.approx(9000 / 16000)
    with pytest.raises(MediaError, match="0.6 s long; the limit is 0.5 s"):
        check(wav, MediaLimits(max_audio_seconds=0.5))
    with pytest.raises(ValueError):
        MediaLimits(max_bytes=0)


def test_content_parts_join_like_upstream() -> None:
    png = "data:image/png;base64,iVBORw=="
    messages = [
        {"role": "system", "content": "Be brief."},
        {"role": "user", "content": [{"type": "text", "text": "one"}, {"type": "text", "text": "two"},
                                     {"type": "image_url", "image_url": {"url": png}},
                                     {"type": "text", "text": "three"}]},
    ]
    out, media = split_media_messages(messages, "<M>")
    assert out[0] == messages[0]
    assert out[1]["content"] == "one\ntwo<M>three"   # newline between texts, none at a marker
    assert media == [b"\x89PNG"]
