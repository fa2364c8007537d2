"""llamaserver: llama.cpp's HTTP server API (and the OpenAI API) served from Python.

Public API::

    LlamaServer(settings=None, **overrides)   # .app, .asgi, .blueprint(), .mount(), .serve()
    ServerSettings                            # every setting and CLI flag, defined once
    main(argv=None)                           # the ``llamaserver`` command

``LlamaServer`` (and with it Quart) is imported on first use, so that
``llamaserver.settings`` and ``llamaserver.engine`` stay importable without the web stack.
"""

from __future__ import annotations

from typing import TYPE_CHECKING, Any

from .settings import ServerSettings

if TYPE_CHECKING:
    from .cli import main
    from .server import LlamaServer

__all__ = ["LlamaServer", "ServerSettings", "main"]


def __getattr__(name: str) -> Any:
    if name == "LlamaServer":
        from .server import LlamaServer

        return LlamaServer
    if name == "main":
        from .cli import main

        return main
    raise AttributeError(f"module 'llamaserver' has no attribute {name!r}")
