"""Every setting of the server, defined once.

Each field carries its description, default and bounds; ``json_schema_extra`` holds the
command-line spelling (``flags``, and ``negative_flags`` for booleans that can be switched
off), the environment variable read when the flag is absent (``env``), the help group and
argparse hints (``nargs``/``const``/``metavar``) where a flag is unusual.
:mod:`llamaserver.cli` builds its parser from these fields, so a flag is never written down
twice.  The fields live in one module per group; :class:`ServerSettings` is all of them.

llama-server flags without a field here (speculative decoding, multimodal, ...) are the rows
of :mod:`llamaserver.settings.upstream`.
"""

from __future__ import annotations

from typing import Any

from ._fields import CacheType
from .chat import ChatSettings
from .context import ContextSettings
from .hardware import HardwareSettings
from .limits import LimitSettings
from .logs import LogSettings
from .media import MediaSettings
from .model import ModelSettings
from .network import NetworkSettings
from .ray import RaySettings
from .rope import RopeSettings
from .sampling import SamplingSettings
from .speculative import SpeculativeSettings
from .upstream import UpstreamOnly

__all__ = ["ServerSettings", "CacheType"]

_SECRETS = ("api_key", "hf_token")


class ServerSettings(UpstreamOnly, LogSettings, LimitSettings, RaySettings, NetworkSettings,
                     HardwareSettings, SamplingSettings, RopeSettings, ContextSettings,
                     ChatSettings, SpeculativeSettings, MediaSettings, ModelSettings):
    """Configuration of one :class:`llamaserver.LlamaServer`.

    Build it directly (``ServerSettings(ctx_size=2048, parallel=4)``), from the command line
    (:func:`llamaserver.cli.parse_args`), or pass the same keywords to ``LlamaServer``.

    Derived values: ``alias`` (the first of ``aliases``), ``hosts`` (``host`` split),
    ``all_api_keys()``, ``template_kwargs()``, ``default_grammar()`` and
    ``default_sampler_params()`` (the sampling defaults of every request).
    """

    def __repr_args__(self) -> Any:  # keys and tokens must never reach a log line through repr()
        for name, value in super().__repr_args__():
            if name in _SECRETS and value:
                value = "<hidden>"
            yield name, value
