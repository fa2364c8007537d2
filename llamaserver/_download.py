"""Where the model comes from: --model, --model-url, --hf-repo/--hf-file, or the default.

Downloads go to ``$LLAMASERVER_CACHE`` (default ``~/.cache/llamaserver/models``) under a
name derived from the URL, are written to a temporary file first and renamed when
complete, and are reused on the next start.
"""

from __future__ import annotations

import hashlib
import logging
import os
import shutil
import tempfile
import urllib.parse
import urllib.request
from pathlib import Path

from .settings import ServerSettings

_log = logging.getLogger("llamaserver")

_CHUNK = 1 << 20


def cache_dir() -> Path:
    root = os.environ.get("LLAMASERVER_CACHE")
    return Path(root) if root else Path.home() / ".cache" / "llamaserver" / "models"


def hf_url(repo: str, filename: str) -> str:
    quoted = "/".join(urllib.parse.quote(part) for part in filename.split("/"))
    return f"https://huggingface.co/{repo}/resolve/main/{quoted}"


def resolve_model_path(settings: ServerSettings) -> Path:
    """The local GGUF file this server should load (downloading it if needed)."""
    if settings.model is not None:
        path = Path(settings.model).expanduser()
        if not path.is_file():
            raise FileNotFoundError(f"model file not found: {path}")
        return path
    if settings.hf_repo:
        if not settings.hf_file:
            raise ValueError("--hf-repo needs --hf-file (the GGUF file inside the repository)")
        return download(hf_url(settings.hf_repo, settings.hf_file), token=settings.hf_token,
                        offline=settings.offline)
    if settings.model_url:
        return download(settings.model_url, token=None, offline=settings.offline)
    from llama_ffi import default_model_path

    return Path(default_model_path())


def resolve_mmproj_path(settings: ServerSettings) -> Path | None:
    """The projector file: --mmproj, else --mmproj-url downloaded (None: text only)."""
    if settings.mmproj is not None:
        return Path(settings.mmproj).expanduser()
    if settings.mmproj_url:
        return download(settings.mmproj_url, token=None, offline=settings.offline)
    return None


def download(url: str, *, token: str | None, offline: bool = False) -> Path:
    """The cached copy of ``url``, downloaded first unless ``offline`` (then missing is an
    error, as llama-server's --offline)."""
    parsed = urllib.parse.urlparse(url)
    if parsed.scheme not in ("http", "https"):
        raise ValueError(f"--model-url must be an http(s) URL, not {parsed.scheme or url!r}")
    name = Path(urllib.parse.unquote(parsed.path)).name or "model.gguf"
    digest = hashlib.sha256(url.encode("utf-8")).hexdigest()[:16]
    target = cache_dir() / f"{digest}-{name}"
    if target.is_file():
        return target
    if offline:
        raise FileNotFoundError(f"--offline: {url} is not in the cache ({target})")
    target.parent.mkdir(parents=True, exist_ok=True)
    req = urllib.request.Request(url, headers={"User-Agent": "llamaserver"})
    if token and parsed.hostname and parsed.hostname.endswith("huggingface.co"):
        req.add_header("Authorization", f"Bearer {token}")
    _log.info("downloading %s", url)
    fd, tmp = tempfile.mkstemp(prefix=".download-", dir=target.parent)
    try:
        with os.fdopen(fd, "wb") as out, urllib.request.urlopen(req, timeout=60) as resp:
            shutil.copyfileobj(resp, out, _CHUNK)
        os.replace(tmp, target)
    except BaseException:
        Path(tmp).unlink(missing_ok=True)
        raise
    _log.info("saved %s", target)
    return target
