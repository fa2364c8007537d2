"""cffi out-of-line API-mode builder for libllama, libmtmd and ggml (devices, RPC, aborts).

The cdef is generated from the very ``ggml-backend.h``, ``ggml-rpc.h``, ``llama.h``,
``mtmd.h`` and ``mtmd-helper.h`` the native libraries were built with (and, from ``ggml.h``,
the abort hook only: ``SELECTED``): each header is run through the C preprocessor, the
declarations that come from that header itself are kept, and the few ggml/gguf types they
mention are pulled in (enums by name only, structs as ``{ ...; }`` or opaque).  The headers
are taken in order, so ``llama.h`` reuses what ``ggml-backend.h`` already declared.
``ggml-rpc.h`` is bound as function-pointer types only (``ggml_backend_rpc_add_server_t`` for
``ggml_backend_rpc_add_server``): the functions are looked up at run time through ggml's
backend registry (as upstream's tools do), so the binding also loads a library built without
the RPC backend.  Enumerator values, ``LLAMA_*`` integer constants and
struct layouts are left to the C compiler (``...``), so a header change shows up as a compile
error instead of a silently wrong binding.

``setup.py`` uses the module-level ``ffibuilder``
(``cffi_modules=["llama_ffi/_cffi_build.py:ffibuilder"]``).  For development::

    python -c "import sys; sys.path.insert(0, '.'); \\
        from llama_ffi._cffi_build import ffibuilder; ffibuilder.compile(tmpdir='.')"
"""

from __future__ import annotations

import hashlib
import json
import os
import re
import shlex
import subprocess
from pathlib import Path

import cffi

MODULE_NAME = "llama_ffi._llama_cffi"
PACKAGE_DIR = Path(__file__).resolve().parent
NATIVE_DIR_ENV = "LLAMA_FFI_NATIVE_DIR"
LIBRARIES = ["mtmd", "llama", "ggml", "ggml-base"]
# The bound headers, in dependency order, with the prefixes of their integer macros.
HEADERS = (("ggml.h", ()), ("ggml-backend.h", ("GGML_BACKEND_",)),
           ("ggml-rpc.h", ("GGML_RPC_", "RPC_PROTO_")),
           ("llama.h", ("LLAMA_",)), ("mtmd.h", ("MTMD_",)), ("mtmd-helper.h", ("MTMD_",)))
# Headers bound in part: only these functions (and the types they use).  From ggml.h, only
# the abort hook: the tensor API is not this binding's business.
SELECTED = {"ggml.h": frozenset({"ggml_set_abort_callback"})}
# Headers whose functions live in a library that a build may lack: bound as pointer types.
LOOKUP_ONLY = frozenset({"ggml-rpc.h"})
LOOKUP_TYPE_MARK = "/* looked up */"
BUILD_HINT = "run `python build_native.py` first (or set LLAMA_FFI_NATIVE_DIR to a staged native tree)"

# Callbacks that libllama calls back into Python.  Their bodies live in
# _log.py, _callbacks.py, _native_abort.py and _custom_samplers.py (ffi.def_extern).
PYTHON_CALLBACKS = """
extern "Python" void llama_ffi_on_log(enum ggml_log_level level, const char * text, void * user_data);
extern "Python" bool llama_ffi_on_progress(float progress, void * user_data);
extern "Python" bool llama_ffi_on_abort(void * user_data);
extern "Python" void llama_ffi_on_ggml_abort(const char * error_message);
extern "Python" const char * llama_ffi_sampler_name(const struct llama_sampler * smpl);
extern "Python" void llama_ffi_sampler_apply(struct llama_sampler * smpl, llama_token_data_array * cur_p);
extern "Python" void llama_ffi_sampler_free(struct llama_sampler * smpl);
"""

# Small C helpers compiled into the extension: they keep per-token loops
# over the vocabulary out of Python.
HELPERS_CDEF = """
const char * llama_ffi_build_info(void);
void llama_ffi_fill_candidates(llama_token_data_array * cur_p, llama_token_data * data,
                               const float * logits, int32_t n_vocab);
int32_t llama_ffi_argmax(const float * logits, int32_t n_vocab);
"""

HELPERS_SOURCE = """
static const char * llama_ffi_build_info(void) {
    return LLAMA_FFI_BUILD_INFO;
}

static void llama_ffi_fill_candidates(llama_token_data_array * cur_p, llama_token_data * data,
                                      const float * logits, int32_t n_vocab) {
    for (int32_t i = 0; i < n_vocab; i++) {
        data[i].id = i;
        data[i].logit = logits[i];
        data[i].p = 0.0f;
    }
    cur_p->data = data;
    cur_p->size = (size_t) n_vocab;
    cur_p->selected = -1;
    cur_p->sorted = false;
}

/* The first index of the largest logit, as libllama's greedy sampler picks it.  Block maxima
   over independent lanes vectorize without -ffast-math; only the block that first reaches the
   maximum is searched for its index. */
static int32_t llama_ffi_argmax(const float * logits, int32_t n_vocab) {
    enum { LANES = 16, BLOCK = 1024 };
    float best = -INFINITY;
    int32_t best_start = -1;
    for (int32_t start = 0; start < n_vocab; start += BLOCK) {
        const int32_t end = n_vocab - start > BLOCK ? start + BLOCK : n_vocab;
        float lane[LANES];
        for (int k = 0; k < LANES; k++) {
            lane[k] = -INFINITY;
        }
        int32_t i = start;
        for (; i + LANES <= end; i += LANES) {
            for (int k = 0; k < LANES; k++) {
                lane[k] = logits[i + k] > lane[k] ? logits[i + k] : lane[k];
            }
        }
        float m = -INFINITY;
        for (int k = 0; k < LANES; k++) {
            m = lane[k] > m ? lane[k] : m;
        }
        for (; i < end; i++) {
            m = logits[i] > m ? logits[i] : m;
        }
        if (m > best) {
            best = m;
            best_start = start;
        }
    }
    for (int32_t i = best_start; i >= 0 && i < n_vocab; i++) {
        if (logits[i] == best) {
            return i;
        }
    }
    return 0; /* every logit -inf or NaN: greedy keeps the first */
}
"""


def native_dir() -> Path:
    """The staged native tree: ``$LLAMA_FFI_NATIVE_DIR`` or ``llama_ffi/_native``."""
    override = os.environ.get(NATIVE_DIR_ENV)
    return Path(override).resolve() if override else PACKAGE_DIR / "_native"


# --------------------------------------------------------------------------
# preprocessing


def _compiler() -> list[str]:
    return shlex.split(os.environ.get("CC", "cc")) or ["cc"]


def _run_cpp(header: Path, include_dir: Path, *extra: str) -> str:
    cmd = [*_compiler(), "-E", *extra, "-I", str(include_dir), str(header)]
    try:
        done = subprocess.run(cmd, check=True, capture_output=True, text=True)
    except FileNotFoundError as exc:
        raise RuntimeError(f"C compiler not found ({cmd[0]}); set CC") from exc
    except subprocess.CalledProcessError as exc:
        raise RuntimeError(f"preprocessing {header} failed:\n{exc.stderr}") from exc
    return done.stdout


_LINEMARKER = re.compile(r'^#\s*(?:line\s+)?\d+\s+"((?:[^"\\]|\\.)*)"')


def _split_by_origin(text: str, header: Path, include_dir: Path) -> tuple[str, str]:
    """Split preprocessor output into (text from ``header``, text from the other headers of ``include_dir``)."""
    own: list[str] = []
    deps: list[str] = []
    target: list[str] | None = None
    header_key = os.path.normpath(header)
    include_key = os.path.normpath(include_dir)
    for line in text.splitlines():
        marker = _LINEMARKER.match(line)
        if marker:
            origin = os.path.normpath(marker.group(1))
            if origin == header_key:
                target = own
            elif os.path.dirname(origin) == include_key:
                target = deps
            else:
                target = None
            continue
        if line.startswith("#"):
            continue  # pragmas
        if target is not None:
            target.append(line)
    return "\n".join(own), "\n".join(deps)


def _skip_literal(text: str, i: int) -> int:
    """Index just past the string/char literal that starts at ``i``."""
    quote = text[i]
    i += 1
    while i < len(text) and text[i] != quote:
        i += 2 if text[i] == "\\" else 1
    return i + 1


def _matching_paren(text: str, i: int) -> int:
    """Index just past the parenthesised group that starts at ``text[i] == '('``."""
    depth = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_literal(text, i)
            continue
        if c == "(":
            depth += 1
        elif c == ")":
            depth -= 1
            if depth == 0:
                return i + 1
        i += 1
    raise ValueError("unbalanced parentheses in header")


_ATTRIBUTE_WITH_ARGS = re.compile(r"\b(__attribute__|__attribute|__declspec|__asm__|__asm|asm)\s*\(")
_BARE_QUALIFIERS = re.compile(r"\b(__extension__|__restrict__|__restrict|__inline__|__inline|__THROW|_Noreturn)\b")


def _strip_attributes(text: str) -> str:
    out: list[str] = []
    pos = 0
    for match in _ATTRIBUTE_WITH_ARGS.finditer(text):
        if match.start() < pos:
            continue  # inside an attribute already removed
        out.append(text[pos : match.start()])
        pos = _matching_paren(text, match.end() - 1)
    out.append(text[pos:])
    return _BARE_QUALIFIERS.sub(" ", "".join(out))


def _top_level_declarations(text: str) -> list[str]:
    """Split C text into top-level declarations (without the trailing ``;``); drop function bodies."""
    decls: list[str] = []
    depth = 0
    start = 0
    body_open = -1
    i = 0
    while i < len(text):
        c = text[i]
        if c in "\"'":
            i = _skip_literal(text, i)
            continue
        if c in "({[":
            if c == "{" and depth == 0:
                body_open = i
            depth += 1
        elif c in ")}]":
            depth -= 1
            if c == "}" and depth == 0 and re.search(r"\)\s*$", text[start:body_open]):
                start = i + 1  # an inline function definition: not a declaration
        elif c == ";" and depth == 0:
            decl = " ".join(text[start:i].split())
            if decl:
                decls.append(decl)
            start = i + 1
        i += 1
    return decls


# --------------------------------------------------------------------------
# declaration model


class _Decl:
    """One top-level declaration (a plain class: this file is also exec'd outside any package)."""

    __slots__ = ("kind", "name", "text")

    def __init__(self, kind: str, name: str, text: str) -> None:
        self.kind = kind  # "struct", "struct_fwd", "enum", "typedef", "function", "other"
        self.name = name  # "struct X", "enum X", typedef or function name
        self.text = text


_IDENT = re.compile(r"[A-Za-z_]\w*")


def _classify(decl: str) -> _Decl:
    if decl.startswith("typedef "):
        fnptr = re.search(r"\(\s*\*\s*(\w+)\s*\)\s*\(", decl)
        if fnptr:
            return _Decl("typedef", fnptr.group(1), decl)
        name = _IDENT.findall(decl.rsplit("}", 1)[-1])[-1]
        return _Decl("typedef", name, decl)
    tagged = re.match(r"(struct|union|enum)\s+(\w+)\s*(\{)?", decl)
    if tagged and (tagged.group(3) or tagged.end() == len(decl)):
        tag, name, body = tagged.groups()
        if tag == "enum":
            return _Decl("enum", f"enum {name}", decl)
        return _Decl("struct" if body else "struct_fwd", f"{tag} {name}", decl)
    paren = decl.find("(")
    if paren > 0:
        return _Decl("function", _IDENT.findall(decl[:paren])[-1], decl)
    return _Decl("other", "", decl)


def _body_span(decl: str) -> tuple[int, int]:
    """(index of the first ``{``, index of its matching ``}``)."""
    open_at = decl.index("{")
    depth = 0
    for i in range(open_at, len(decl)):
        if decl[i] == "{":
            depth += 1
        elif decl[i] == "}":
            depth -= 1
            if depth == 0:
                return open_at, i
    raise ValueError(f"unbalanced braces in: {decl[:80]}")


def _enum_names_only(decl: str) -> str:
    """``enum X { A = 1 << 0, B = A, }`` -> ``enum X { A, B, ... }``: the compiler supplies the values."""
    open_at, close_at = _body_span(decl)
    names = [item.split("=")[0].strip() for item in decl[open_at + 1 : close_at].split(",")]
    names = [n for n in names if n]
    return decl[: open_at + 1] + " " + ", ".join([*names, "..."]) + " " + decl[close_at:]


def _partial_struct(decl: str, keep_fields: bool) -> str:
    """Append ``...;`` to a struct body so the compiler checks/supplies the layout."""
    open_at, close_at = _body_span(decl)
    body = decl[open_at + 1 : close_at].strip() if keep_fields else ""
    if body and not body.endswith(";"):
        body += ";"
    return decl[: open_at + 1] + " " + (body + " " if body else "") + "...; " + decl[close_at:]


def _references(text: str) -> set[str]:
    refs = {f"{tag} {name}" for tag, name in re.findall(r"\b(struct|union|enum)\s+(\w+)", text)}
    refs.update(_IDENT.findall(text))
    return refs


def _dependency_cdef(own: list[_Decl], deps_text: str, already: set[str]) -> list[str]:
    """The declarations from other headers that ``own`` needs, in header order, except those
    an earlier header's cdef holds (``already``, which grows by what is emitted here)."""
    deps = [_classify(d) for d in _top_level_declarations(_strip_attributes(deps_text))]
    defined: dict[str, _Decl] = {}
    for decl in deps:
        if decl.kind == "struct_fwd" and decl.name in defined:
            continue
        if decl.kind in ("struct", "struct_fwd", "enum", "typedef"):
            defined[decl.name] = decl
    own_names = {d.name for d in own} | already
    for decl in own:
        own_names.update(f"{tag} {name}" for tag, name in re.findall(r"\b(struct|union|enum)\s+(\w+)\s*\{", decl.text))

    needed: set[str] = set()
    pending = set().union(*(_references(d.text) for d in own))
    while pending:
        name = pending.pop()
        if name in needed or name in own_names:
            continue
        if name in defined:
            needed.add(name)
            decl = defined[name]
            if decl.kind == "typedef":
                pending |= _references(decl.text)
        elif name.startswith(("struct ", "union ")):
            needed.add(name)  # only ever used through pointers: opaque

    out: list[str] = []
    emitted: set[str] = set()
    for name in sorted(n for n in needed if n not in defined):
        out.append(f"{name};")
        emitted.add(name)
    for decl in deps:
        if decl.name not in needed or decl.name in emitted or defined.get(decl.name) is not decl:
            continue
        emitted.add(decl.name)
        if decl.kind == "enum":
            out.append(_enum_names_only(decl.text) + ";")
        elif decl.kind == "struct":
            out.append(_partial_struct(decl.text, keep_fields=False) + ";")
        elif decl.kind == "typedef" and "{" in decl.text:
            out.append(_partial_struct(decl.text, keep_fields=False) + ";")
        else:
            out.append(decl.text + ";")
    already |= emitted
    return out


_INT_LITERAL = re.compile(r"^\(?\s*-?\s*(0[xX][0-9a-fA-F]+|\d+)[uUlL]*\s*\)?$")


def _integer_macros(header: Path, include_dir: Path, prefix: tuple[str, ...]) -> list[str]:
    """Names of the object-like ``<prefix>*`` macros whose expansion is an integer literal."""
    macros: dict[str, str] = {}
    for line in _run_cpp(header, include_dir, "-dM").splitlines():
        m = re.match(r"#define\s+(\w+)(\(?)\s*(.*)$", line)
        if m and not m.group(2):
            macros[m.group(1)] = m.group(3).strip()
    names = []
    for name, value in macros.items():
        if not name.startswith(prefix):
            continue
        seen = {name}
        while value in macros and value not in seen:
            seen.add(value)
            value = macros[value]
        if _INT_LITERAL.match(value):
            names.append(name)
    return sorted(names)


def _function_pointer_type(decl: _Decl) -> str:
    """``extern R f(args)`` -> ``typedef R (*f_t)(args)``: the type of a looked-up function."""
    text = decl.text[len("extern "):] if decl.text.startswith("extern ") else decl.text
    at = text.index(decl.name + "(") if decl.name + "(" in text else text.index(decl.name)
    rest = text[at + len(decl.name):].lstrip()
    return f"typedef {text[:at]}(*{decl.name}_t){rest}; {LOOKUP_TYPE_MARK}"


def _header_cdef(include_dir: Path, name: str, prefix: tuple[str, ...], emitted: set[str]) -> list[str]:
    """The cdef lines for one header; ``emitted`` holds the names earlier headers declared."""
    header = include_dir / name
    own_text, deps_text = _split_by_origin(_run_cpp(header, include_dir), header, include_dir)
    own = [_classify(d) for d in _top_level_declarations(_strip_attributes(own_text))]
    if name in SELECTED:
        # the chosen functions; what they use comes in as if from another header
        own = [d for d in own if d.kind == "function" and d.name in SELECTED[name]]
        deps_text = own_text + "\n" + deps_text

    lines = [f"/* generated from {name} by llama_ffi/_cffi_build.py */"]
    lines += _dependency_cdef(own, deps_text, emitted)
    for decl in own:
        if decl.kind == "enum":
            lines.append(_enum_names_only(decl.text) + ";")
        elif decl.kind == "struct" or (decl.kind == "typedef" and "{" in decl.text):
            lines.append(_partial_struct(decl.text, keep_fields=True) + ";")
        elif decl.kind == "other":
            raise RuntimeError(f"unexpected declaration in {name}: {decl.text[:120]}")
        elif decl.kind == "function" and name in LOOKUP_ONLY:
            lines.append(_function_pointer_type(decl))
        else:
            lines.append(decl.text + ";")
        emitted.add(decl.name)
        emitted.update(f"{tag} {tagged}" for tag, tagged in re.findall(r"\b(struct|union|enum)\s+(\w+)\s*\{", decl.text))
    lines += [f"#define {macro} ..." for macro in _integer_macros(header, include_dir, prefix)]
    return lines


def generate_cdef(include_dir: Path) -> str:
    """The cdef for the bound headers in ``include_dir`` (without the callbacks and helpers)."""
    emitted: set[str] = set()
    lines: list[str] = []
    for name, prefix in HEADERS:
        lines += _header_cdef(include_dir, name, prefix, emitted)
    return "\n".join(lines) + "\n"


# --------------------------------------------------------------------------
# builder


def header_key(name: str) -> str:
    """The build-info key holding a header's sha256: ``llama.h`` -> ``llama_h_sha256``."""
    return name.replace(".", "_").replace("-", "_") + "_sha256"


def _build_info(native: Path) -> dict[str, str]:
    manifest_path = native / "manifest.json"
    commit = ""
    if manifest_path.is_file():
        commit = str(json.loads(manifest_path.read_text(encoding="utf-8")).get("upstream_commit", ""))
    info = {"upstream_commit": commit}
    for name, _prefix in HEADERS:
        info[header_key(name)] = hashlib.sha256((native / "include" / name).read_bytes()).hexdigest()
    return info


def _c_string(value: str) -> str:
    return '"' + value.replace("\\", "\\\\").replace('"', '\\"') + '"'


def make_ffibuilder(native: Path | None = None) -> cffi.FFI:
    native = native or native_dir()
    include_dir = (native / "include").resolve()
    lib_dir = (native / "lib").resolve()
    for name, _prefix in HEADERS:
        if not (include_dir / name).is_file():
            raise RuntimeError(f"{name} not found in {include_dir}: {BUILD_HINT}")

    builder = cffi.FFI()
    cdef = generate_cdef(include_dir)
    builder.cdef(cdef + PYTHON_CALLBACKS + HELPERS_CDEF)
    info = json.dumps(_build_info(native), sort_keys=True)
    includes = "".join(f'#include "{name}"\n' for name, _prefix in HEADERS)
    # The looked-up functions' pointer types are the binding's own: C must see them too.
    includes += "".join(line + "\n" for line in cdef.splitlines() if line.endswith(LOOKUP_TYPE_MARK))
    builder.set_source(
        MODULE_NAME,
        f"#include <math.h>\n{includes}#define LLAMA_FFI_BUILD_INFO {_c_string(info)}\n" + HELPERS_SOURCE,
        include_dirs=[str(include_dir)],
        library_dirs=[str(lib_dir)],
        libraries=list(LIBRARIES),
        extra_compile_args=["-Wno-deprecated-declarations"],
        extra_link_args=["-Wl,-rpath,$ORIGIN/_native/lib"],
    )
    return builder


ffibuilder = make_ffibuilder()

if __name__ == "__main__":
    ffibuilder.compile(verbose=True)
