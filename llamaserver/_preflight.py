"""What the ``llamaserver`` command checks before it binds a socket.

A start-up error is one ``llamaserver: error: ...`` line and exit status 1, before anything
listens or is printed.  The model loads after the sockets are bound (``/health`` answers 503
meanwhile, as llama-server's does); everything else that can fail at start-up is checked
here: the files the settings name (chat template, -spf), the TLS key and certificate, and a
local projector, loaded in a child process (libmtmd aborts on some malformed files).
"""

from __future__ import annotations

import ssl
from pathlib import Path

from ._engine_config import ConfigError, check_files
from .settings import ServerSettings

__all__ = ["preflight"]


def preflight(settings: ServerSettings) -> None:
    """Raise ``ConfigError`` (its message names the flag) for what would fail the start."""
    check_files(settings)
    _check_tls(settings)
    _check_projector(settings)


def _check_tls(settings: ServerSettings) -> None:
    cert, key = settings.ssl_cert_file, settings.ssl_key_file
    if not (cert and key):
        return
    try:
        ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER).load_cert_chain(str(cert), str(key))
    except (ssl.SSLError, OSError) as exc:
        raise ConfigError(f"--ssl-cert-file {cert} / --ssl-key-file {key}: not a usable "
                          f"certificate and private key ({exc})") from None


def _check_projector(settings: ServerSettings) -> None:
    """A local --mmproj with a local model (a downloaded one is checked once it is here)."""
    if settings.mmproj is None or settings.hf_repo or settings.model_url:
        return
    import llama_ffi

    try:
        model = Path(settings.model) if settings.model else llama_ffi.default_model_path()
        llama_ffi.check_projector_file(model, settings.mmproj)
    except (llama_ffi.ModelLoadError, FileNotFoundError) as exc:
        raise ConfigError(f"--mmproj: {exc}") from None
