"""Writing the tests' small GGUF files with ggml-org's ``gguf`` package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def save_gguf(writer: Any, tensors: Mapping[str, Any]) -> None:
    """Add ``tensors`` (name -> numpy array) to ``writer`` (a ``gguf.GGUFWriter`` holding its
    key/values) and write the file: header, key/values, tensors."""
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
