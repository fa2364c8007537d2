"""The binding covers llama.h: every LLAMA_API function is callable through ``lib``."""

from __future__ import annotations

import hashlib
import json
import re
import shutil
import sys
from pathlib import Path

import pytest

import llama_ffi
from llama_ffi import ffi, lib

HEADER = Path(llama_ffi.__file__).parent / "_native" / "include" / "llama.h"

# Functions of llama.h deliberately absent from `lib`, with the reason. (None today.)
NOT_BOUND: dict[str, str] = {}


def declared_functions(text: str) -> set[str]:
    """Names of the functions llama.h declares with LLAMA_API (DEPRECATED(...) wrappers included)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the LLAMA_API/DEPRECATED macro definitions
    names = set()
    for match in re.finditer(r"\bLLAMA_API\b", text):
        tail = text[match.end() : match.end() + 400]
        call = re.search(r"\b(\w+)\s*\(", tail)
        if call and call.group(1) == "DEPRECATED":
            call = re.search(r"\b(\w+)\s*\(", tail[call.end() :])
        assert call, f"unparsed declaration: {tail[:80]!r}"
        names.add(call.group(1))
    return names


def test_every_llama_api_function_is_bound() -> None:
    names = declared_functions(HEADER.read_text(encoding="utf-8"))
    assert len(names) > 200, "the header parser found too few functions"
    assert {"llama_decode", "llama_tokenize", "llama_free_model", "llama_sampler_init_grammar_lazy"} <= names
    missing = sorted(n for n in names if n not in NOT_BOUND and not hasattr(lib, n))
    assert missing == []


def test_not_bound_list_is_current() -> None:
    names = declared_functions(HEADER.read_text(encoding="utf-8"))
    assert set(NOT_BOUND) <= names


def test_constants_come_from_the_compiler() -> None:
    assert lib.LLAMA_DEFAULT_SEED == 0xFFFFFFFF
    assert lib.LLAMA_TOKEN_NULL == -1
    assert lib.LLAMA_SESSION_MAGIC == lib.LLAMA_FILE_MAGIC_GGSN == 0x6767736E
    assert lib.LLAMA_ROPE_TYPE_NEOX == 2  # defined through a ggml macro in the header
    assert lib.GGML_TYPE_Q8_0 == 8 and lib.GGML_LOG_LEVEL_CONT == 5


def test_struct_layouts_match_the_header() -> None:
    # cffi checks these against the C compiler's layout ("...;" in the cdef)
    params = lib.llama_context_default_params()
    assert params.n_ctx > 0 and params.n_batch >= params.n_ubatch
    assert ffi.sizeof("llama_token_data") == 12
    assert ffi.offsetof("struct llama_batch", "token") == ffi.sizeof("void *")


def test_extension_was_built_from_this_header() -> None:
    info = llama_ffi.build_info()
    assert info["llama_h_sha256"] == hashlib.sha256(HEADER.read_bytes()).hexdigest()


def test_stale_header_is_an_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_ffi._ffi as binding

    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "llama.h").write_text(HEADER.read_text() + "\n// changed\n")
    monkeypatch.setattr(binding, "NATIVE_DIR", tmp_path)
    with pytest.raises(ImportError, match="build_native.py"):
        binding._check_build_matches_native()


def test_other_upstream_commit_is_an_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_ffi._ffi as binding

    if not llama_ffi.build_info()["upstream_commit"]:
        pytest.skip("the extension was compiled before _native/manifest.json existed")
    (tmp_path / "manifest.json").write_text(json.dumps({"upstream_commit": "deadbeef"}))
    monkeypatch.setattr(binding, "NATIVE_DIR", tmp_path)
    with pytest.raises(ImportError, match="deadbeef.*build_native.py"):
        binding._check_build_matches_native()


def test_cdef_is_generated_from_the_header(tmp_path: Path) -> None:
    """A change to llama.h shows up in the generated cdef (nothing is transcribed by hand)."""
    sys.path.insert(0, str(Path(llama_ffi.__file__).parent.parent))
    from llama_ffi._cffi_build import generate_cdef

    include = tmp_path / "include"
    shutil.copytree(HEADER.parent, include)
    text = HEADER.read_text()
    text = text.replace(
        "LLAMA_API void llama_backend_free(void);",
        "LLAMA_API void llama_backend_free(void);\n    LLAMA_API int32_t llama_brand_new(float x);",
    )
    text = text.replace("        uint32_t n_seq_max;", "        uint32_t n_seq_max_renamed;")
    (include / "llama.h").write_text(text)
    cdef = generate_cdef(include)
    assert "int32_t llama_brand_new(float x);" in cdef
    assert "n_seq_max_renamed" in cdef
    assert "GGML_TYPE_F16" in cdef and "= 1" not in cdef.split("enum ggml_type", 1)[1].split("}", 1)[0]
    assert "#define LLAMA_SESSION_VERSION ..." in cdef
    assert "ggml_add(" not in cdef  # only llama.h's own declarations
