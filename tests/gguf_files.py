"""Writing the tests' small GGUF files with ggml-org's ``gguf`` package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def copy_tokenizer(writer: Any, source: Any) -> int:
    """Copy every ``tokenizer.*`` key of ``source`` (a ``gguf.GGUFReader``) to ``writer``;
    returns the size of that vocabulary."""
    for key, field in source.fields.items():
        if key.startswith("tokenizer."):
            sub_type = field.types[1] if len(field.types) > 1 else None
            writer.add_key_value(key, field.contents(), field.types[0], sub_type)
    return len(source.fields["tokenizer.ggml.tokens"].contents())


def save_gguf(writer: Any, tensors: Mapping[str, Any]) -> None:
    """Add ``tensors`` (name -> numpy array) to ``writer`` (a ``gguf.GGUFWriter`` holding its
    key/values) and write the file: header, key/values, tensors."""
    for name, value in tensors.items():
        writer.add_tensor(name, value)
    writer.write_header_to_file()
    writer.write_kv_data_to_file()
    writer.write_tensors_to_file()
    writer.close()
