"""Writing the tests' small GGUF files with ggml-org's ``gguf`` package."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any


def model_writer(path: Any, arch: str, name: str, hparams: Mapping[str, int]) -> Any:
    """A ``gguf.GGUFWriter`` for an ``arch`` model called ``name``, with its integer
    hyperparameters (``hparams``' keys without the ``arch.`` prefix)."""
    import gguf

    writer = gguf.GGUFWriter(str(path), arch)
    writer.add_string("general.name", name)
    for key, value in hparams.items():
        writer.add_uint32(f"{arch}.{key}", value)
    return writer


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
