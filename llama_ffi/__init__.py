"""llama_ffi: llama.cpp's libllama in Python, through cffi.

The typed layer (``Model``, ``Context``, ``SamplerChain``, ``Projector``, ...) owns
libllama's and libmtmd's handles; ``ffi``/``lib`` give the raw binding generated from
``llama.h``, ``mtmd.h`` and ``mtmd-helper.h``.
libllama's log goes to ``logging.getLogger("llama_ffi.native")``.
"""

from llama_ffi._errors import (
    ContextError,
    DecodeError,
    GrammarError,
    InvalidTokenError,
    LlamaError,
    MediaError,
    ModelLoadError,
    NativeAbort,
    NativeLibraryError,
    RpcServerError,
    RpcUnavailableError,
    StateError,
    TemplateError,
)
from llama_ffi._ffi import build_info, ffi, lib, numa_init
from llama_ffi._log import LOGGER_NAME
from llama_ffi._batch import Batch
from llama_ffi._chat_template import ChatTemplate, builtin_template_names
from llama_ffi._context import Context
from llama_ffi._decoder import TokenDecoder
from llama_ffi._embedding import Embedder, normalize_embedding
from llama_ffi._devices import (Device, add_rpc_servers, default_devices, devices, find_devices,
                               is_loopback_endpoint, rpc_server_path, rpc_supported)
from llama_ffi._native_abort import abandon_native, guard_native_aborts
from llama_ffi._default_model import default_model_path, native_manifest, system_info
from llama_ffi._llama import Llama
from llama_ffi._lora import LoraAdapter
from llama_ffi._media import MediaLimits
from llama_ffi._model import Model
from llama_ffi._mtmd import Projector
from llama_ffi._mtmd_chunks import Bitmap, Chunk, Chunks, MediaEmbeddings
from llama_ffi._mtmd_probe import check_projector_file
from llama_ffi._rerank import RerankPrompt
from llama_ffi._sampler_params import (DEFAULT_SAMPLERS, DEFAULT_SEED, MAX_GRAMMAR_BYTES,
                                       SamplerParams)
from llama_ffi._sampling import SamplerChain, TokenProbs
from llama_ffi._stop import StopMatcher
from llama_ffi._vocab import Vocab

__all__ = [
    "Batch",
    "Bitmap",
    "ChatTemplate",
    "Chunk",
    "Chunks",
    "Context",
    "ContextError",
    "DEFAULT_SAMPLERS",
    "DEFAULT_SEED",
    "DecodeError",
    "Device",
    "Embedder",
    "GrammarError",
    "InvalidTokenError",
    "LOGGER_NAME",
    "MAX_GRAMMAR_BYTES",
    "Llama",
    "LlamaError",
    "LoraAdapter",
    "MediaEmbeddings",
    "MediaError",
    "MediaLimits",
    "Model",
    "ModelLoadError",
    "NativeAbort",
    "NativeLibraryError",
    "Projector",
    "RerankPrompt",
    "RpcServerError",
    "RpcUnavailableError",
    "SamplerChain",
    "SamplerParams",
    "StateError",
    "StopMatcher",
    "TemplateError",
    "TokenDecoder",
    "TokenProbs",
    "Vocab",
    "add_rpc_servers",
    "build_info",
    "builtin_template_names",
    "check_projector_file",
    "default_devices",
    "default_model_path",
    "devices",
    "ffi",
    "find_devices",
    "abandon_native",
    "guard_native_aborts",
    "is_loopback_endpoint",
    "lib",
    "native_manifest",
    "normalize_embedding",
    "numa_init",
    "rpc_server_path",
    "rpc_supported",
    "system_info",
]
