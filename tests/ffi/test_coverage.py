"""The binding covers llama.h, mtmd.h and mtmd-helper.h: every LLAMA_API and MTMD_API function
is callable through ``lib``."""

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

INCLUDE = Path(llama_ffi.__file__).parent / "_native" / "include"
HEADER = INCLUDE / "llama.h"
MTMD_HEADERS = (INCLUDE / "mtmd.h", INCLUDE / "mtmd-helper.h")

# Functions of the headers deliberately absent from `lib`, with the reason. (None today: the
# C++-only declarations inside `#ifdef __cplusplus` are not C API and are not counted.)
NOT_BOUND: dict[str, str] = {}


def _without_cplusplus_blocks(text: str) -> str:
    """``text`` without the ``#ifdef __cplusplus`` ... ``#endif`` blocks (nesting respected)."""
    kept: list[str] = []
    stack: list[bool] = []  # per open #if: is it a C++-only block?
    for line in text.splitlines():
        directive = line.strip()
        if directive.startswith("#if"):
            stack.append(directive.split()[:2] == ["#ifdef", "__cplusplus"])
        elif directive.startswith("#endif") and stack:
            if stack.pop():
                continue
        if not any(stack):
            kept.append(line)
    return "\n".join(kept)


def declared_functions(text: str, api: str = "LLAMA_API") -> set[str]:
    """Names of the C functions a header declares with ``api`` (DEPRECATED(...) wrappers included)."""
    text = re.sub(r"/\*.*?\*/", " ", text, flags=re.S)
    text = re.sub(r"//[^\n]*", " ", text)
    text = _without_cplusplus_blocks(text)
    text = re.sub(r"^\s*#.*$", " ", text, flags=re.M)  # the API/DEPRECATED macro definitions
    names = set()
    for match in re.finditer(rf"\b{api}\b", text):
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


def test_every_mtmd_api_function_is_bound() -> None:
    names: set[str] = set()
    for header in MTMD_HEADERS:
        names |= declared_functions(header.read_text(encoding="utf-8"), "MTMD_API")
    assert len(names) > 70, "the header parser found too few functions"
    assert {"mtmd_init_from_file", "mtmd_tokenize", "mtmd_encode_chunk", "mtmd_image_tokens_get_nx",
            "mtmd_helper_eval_chunks", "mtmd_helper_bitmap_init_from_buf"} <= names
    assert "mtmd_get_memory_usage" not in names  # C++ only (std::map), inside #ifdef __cplusplus
    missing = sorted(n for n in names if n not in NOT_BOUND and not hasattr(lib, n))
    assert missing == []


def test_not_bound_list_is_current() -> None:
    names = declared_functions(HEADER.read_text(encoding="utf-8"))
    for header in MTMD_HEADERS:
        names |= declared_functions(header.read_text(encoding="utf-8"), "MTMD_API")
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


def test_mtmd_structs_and_enums_come_from_the_compiler() -> None:
    params = lib.mtmd_context_params_default()
    assert params.n_threads > 0 and ffi.string(params.media_marker) == b"<__media__>"
    assert lib.MTMD_INPUT_CHUNK_TYPE_IMAGE == 1 and lib.MTMD_INPUT_CHUNK_TYPE_AUDIO == 2
    assert ffi.sizeof("struct mtmd_decoder_pos") == 16


def test_extension_was_built_from_these_headers() -> None:
    info = llama_ffi.build_info()
    assert info["llama_h_sha256"] == hashlib.sha256(HEADER.read_bytes()).hexdigest()
    assert info["mtmd_h_sha256"] == hashlib.sha256(MTMD_HEADERS[0].read_bytes()).hexdigest()
    assert info["mtmd_helper_h_sha256"] == hashlib.sha256(MTMD_HEADERS[1].read_bytes()).hexdigest()


def test_stale_header_is_an_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_ffi._ffi as binding

    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "llama.h").write_text(HEADER.read_text() + "\n// changed\n")
    monkeypatch.setattr(binding, "NATIVE_DIR", tmp_path)
    with pytest.raises(ImportError, match="build_native.py"):
        binding._check_build_matches_native()


def test_stale_mtmd_header_is_an_import_error(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    import llama_ffi._ffi as binding

    (tmp_path / "include").mkdir()
    (tmp_path / "include" / "mtmd.h").write_text(MTMD_HEADERS[0].read_text() + "\n// changed\n")
    monkeypatch.setattr(binding, "NATIVE_DIR", tmp_path)
    with pytest.raises(ImportError, match="mtmd.h changed.*build_native.py"):
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


def test_mtmd_cdef_is_generated_from_its_headers(tmp_path: Path) -> None:
    """mtmd.h's declarations come from the header too, after llama.h's, each declared once."""
    sys.path.insert(0, str(Path(llama_ffi.__file__).parent.parent))
    from llama_ffi._cffi_build import generate_cdef

    include = tmp_path / "include"
    shutil.copytree(INCLUDE, include)
    text = MTMD_HEADERS[0].read_text()
    text = text.replace("MTMD_API const char * mtmd_default_marker(void);",
                        "MTMD_API const char * mtmd_default_marker(void);\nMTMD_API int mtmd_brand_new(int x);")
    (include / "mtmd.h").write_text(text)
    cdef = generate_cdef(include)
    assert "int mtmd_brand_new(int x);" in cdef
    assert cdef.count("enum llama_flash_attn_type {") == 1  # llama.h's, not repeated for mtmd.h
    assert cdef.count("struct mtmd_context_params {") == 1  # mtmd.h's, not repeated for mtmd-helper.h
    assert cdef.index("struct llama_model_params {") < cdef.index("mtmd_init_from_file(")
