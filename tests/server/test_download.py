"""Where the model comes from: --model, --model-url, --hf-repo/--hf-file (no model loaded)."""

from __future__ import annotations

import http.server
import threading
from collections.abc import Iterator
from pathlib import Path

import pytest

from llamaserver import ServerSettings
from llamaserver._download import hf_url, resolve_model_path


@pytest.fixture()
def file_server(tmp_path: Path) -> Iterator[tuple[str, list[str]]]:
    (tmp_path / "tiny.gguf").write_bytes(b"GGUF" + bytes(range(256)) * 64)
    requests: list[str] = []

    class Handler(http.server.SimpleHTTPRequestHandler):
        def __init__(self, *args: object, **kwargs: object) -> None:
            super().__init__(*args, directory=str(tmp_path), **kwargs)  # type: ignore[arg-type]

        def log_message(self, format: str, *args: object) -> None:
            requests.append(self.path)

    httpd = http.server.ThreadingHTTPServer(("127.0.0.1", 0), Handler)
    thread = threading.Thread(target=httpd.serve_forever, daemon=True)
    thread.start()
    yield f"http://127.0.0.1:{httpd.server_address[1]}", requests
    httpd.shutdown()
    httpd.server_close()


def test_model_url_is_downloaded_once(file_server: tuple[str, list[str]], tmp_path: Path,
                                      monkeypatch: pytest.MonkeyPatch) -> None:
    base, requests = file_server
    monkeypatch.setenv("LLAMASERVER_CACHE", str(tmp_path / "cache"))
    settings = ServerSettings(model_url=base + "/tiny.gguf")
    path = resolve_model_path(settings)
    assert path.parent == tmp_path / "cache" and path.name.endswith("-tiny.gguf")
    assert path.read_bytes() == (tmp_path / "tiny.gguf").read_bytes()
    assert resolve_model_path(settings) == path
    assert len(requests) == 1
    assert not [p for p in path.parent.iterdir() if p.name.startswith(".download-")]


def test_failed_download_leaves_nothing(file_server: tuple[str, list[str]], tmp_path: Path,
                                        monkeypatch: pytest.MonkeyPatch) -> None:
    base, _ = file_server
    monkeypatch.setenv("LLAMASERVER_CACHE", str(tmp_path / "cache"))
    with pytest.raises(OSError):
        resolve_model_path(ServerSettings(model_url=base + "/missing.gguf"))
    assert list((tmp_path / "cache").iterdir()) == []


def test_other_sources() -> None:
    assert hf_url("user/repo", "dir/model Q4.gguf") == (
        "https://huggingface.co/user/repo/resolve/main/dir/model%20Q4.gguf")
    with pytest.raises(ValueError):
        resolve_model_path(ServerSettings(model_url="file:///etc/passwd"))
    with pytest.raises(ValueError):
        resolve_model_path(ServerSettings(hf_repo="user/repo"))
    with pytest.raises(FileNotFoundError):
        resolve_model_path(ServerSettings(model=Path("/no/such/model.gguf")))
    default = resolve_model_path(ServerSettings())
    assert default.is_file() and default.suffix == ".gguf"
