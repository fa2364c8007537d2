"""Exceptions of llama_ffi, and the one place where libllama's failures become them.

Exception tree::

    LlamaError
    ├── NativeLibraryError (also ImportError)   the compiled binding or libllama is missing/stale
    ├── ModelLoadError                          llama_model_load_from_file returned NULL
    ├── ContextError                            llama_init_from_model returned NULL, bad context use
    ├── DecodeError                             llama_decode/llama_encode returned non-zero (.code)
    ├── InvalidTokenError (also ValueError)     a token id outside [0, n_vocab)
    ├── TemplateError (also ValueError)         a chat template failed to render
    ├── GrammarError (also ValueError)          a GBNF grammar failed to parse
    ├── StateError                              a state/session save or load failed
    ├── MediaError (also ValueError)            image/audio data that is not a supported format,
    │                                           is over a size limit, or that libmtmd rejects
    ├── RpcUnavailableError                     the library was built without ggml's RPC backend
    ├── RpcServerError                          an RPC server is unreachable or offers no device
    └── NativeAbort                             ggml aborted on a thread that asked to survive it
                                                (the thread is parked; see _native_abort.py)

libllama and libmtmd report failure with NULL pointers, zero sizes and integer
codes; ``check_pointer``, ``check_size``, ``check_decode`` and ``check_mtmd``
below turn those into the exceptions above.  No other module inspects a C
return code.
"""

from __future__ import annotations

from typing import Any, NoReturn, TypeVar

BUILD_FIX = "python build_native.py && pip install -e ."

T = TypeVar("T")


class LlamaError(Exception):
    """Base class of every llama_ffi error."""


class NativeLibraryError(LlamaError, ImportError):
    """The compiled binding or the native library is missing, broken or stale."""


class ModelLoadError(LlamaError):
    """A model file could not be loaded."""


class ContextError(LlamaError):
    """A context could not be created or was used in a way libllama rejects."""


class DecodeError(LlamaError):
    """``llama_decode``/``llama_encode`` failed; ``code`` is libllama's return value."""

    def __init__(self, code: int, message: str) -> None:
        super().__init__(message)
        self.code = code


class InvalidTokenError(LlamaError, ValueError):
    """A token id is outside the vocabulary."""


class TemplateError(LlamaError, ValueError):
    """A chat template could not be rendered."""


class GrammarError(LlamaError, ValueError):
    """A GBNF grammar could not be parsed."""


class StateError(LlamaError):
    """Saving or restoring a context state failed."""


class MediaError(LlamaError, ValueError):
    """Image or audio input that cannot be used: not a supported format, over a size limit,
    not accepted by the projector, or a prompt whose media markers do not match its media."""


class RpcUnavailableError(LlamaError):
    """This libllama was built without ggml's RPC backend (``build_native.py --rpc``)."""


class RpcServerError(LlamaError):
    """An RPC server cannot be used: nothing listening there, or it offers no devices."""


class NativeAbort(LlamaError):
    """ggml aborted on a guarded thread; the message is ggml's (file, line and reason)."""


# llama_decode's documented return codes
DECODE_NO_KV_SLOT = 1
DECODE_ABORTED = 2
DECODE_INVALID_BATCH = -1

_DECODE_MEANING = {
    DECODE_NO_KV_SLOT: "no KV cache slot for the batch (context full: reduce the batch or enlarge the context)",
    DECODE_ABORTED: "aborted by the abort callback",
    DECODE_INVALID_BATCH: "invalid input batch (token id, position or sequence id out of range)",
}


def check_decode(code: int, operation: str = "llama_decode") -> None:
    """Raise ``DecodeError`` unless ``code`` is 0."""
    if code == 0:
        return
    meaning = _DECODE_MEANING.get(code, "fatal error in the compute backend")
    raise DecodeError(code, f"{operation} failed with code {code}: {meaning}")


# mtmd_tokenize's documented return codes
_TOKENIZE_MEANING = {
    1: "the number of media does not match the number of media markers in the text",
    2: "the projector could not preprocess the media (see the llama_ffi.native log)",
}


def check_mtmd(code: int, operation: str) -> None:
    """Raise for a non-zero libmtmd return code: ``MediaError`` from ``mtmd_tokenize``,
    ``DecodeError`` from encoding (``mtmd_encode_chunk``) and the helpers' evaluation."""
    if code == 0:
        return
    if operation == "mtmd_tokenize":
        raise MediaError(f"{operation} failed with code {code}: {_TOKENIZE_MEANING.get(code, 'unknown error')}")
    if operation == "mtmd_encode_chunk":
        raise DecodeError(code, f"{operation} failed with code {code}: the projector could not encode the media"
                                " (see the llama_ffi.native log)")
    check_decode(code, operation)


def check_pointer(pointer: T, error: type[LlamaError], message: str) -> T:
    """Return ``pointer`` unless it is NULL, in which case raise ``error(message)``."""
    if not pointer:
        raise error(message)
    return pointer


def check_size(size: int, error: type[LlamaError], message: str) -> int:
    """Return ``size`` unless it is 0 (libllama's state API's failure value)."""
    if size == 0:
        raise error(message)
    return size


def native_library_missing(detail: str, cause: BaseException | None = None) -> NoReturn:
    """Raise the ImportError that tells the user how to build the native parts."""
    error = NativeLibraryError(f"llama_ffi's native library is not usable: {detail}. Build it with: {BUILD_FIX}")
    if cause is not None:
        raise error from cause
    raise error


def reraise_pending(errors: list[BaseException]) -> None:
    """Re-raise the first exception a Python callback stored while C was running."""
    if errors:
        first = errors[0]
        errors.clear()
        raise first


def describe(value: Any) -> str:
    """Short repr for error messages (never the whole of a huge input)."""
    text = repr(value)
    return text if len(text) <= 80 else text[:77] + "..."
