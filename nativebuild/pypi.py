"""Download one file of one release from a PEP 691 package index, checked by sha256."""

from __future__ import annotations

import hashlib
import json
import os
import pathlib
import urllib.parse
import urllib.request

DEFAULT_INDEX = "https://pypi.org/simple"
_ACCEPT = "application/vnd.pypi.simple.v1+json"


def index_url() -> str:
    url = os.environ.get("PIP_INDEX_URL", "")
    return (url if url.startswith(("http://", "https://")) else DEFAULT_INDEX).rstrip("/")


def sha256_of(path: pathlib.Path) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as fh:
        for chunk in iter(lambda: fh.read(1 << 20), b""):
            digest.update(chunk)
    return digest.hexdigest()


def find_file(project: str, predicate) -> dict:
    """The index's entry (url, hashes, filename) of the first file of `project` that fits."""
    request = urllib.request.Request(f"{index_url()}/{project}/", headers={"Accept": _ACCEPT})
    with urllib.request.urlopen(request, timeout=60) as response:
        listing = json.load(response)
    for entry in listing.get("files", []):
        if predicate(entry["filename"]):
            return entry
    raise FileNotFoundError(f"no matching file of {project} on {index_url()}")


def download(entry: dict, dest: pathlib.Path, *, sha256: str | None = None, log=print) -> pathlib.Path:
    """Fetch `entry` to `dest` unless a file with the right digest is already there."""
    expected = sha256 or entry.get("hashes", {}).get("sha256")
    if dest.exists() and (expected is None or sha256_of(dest) == expected):
        return dest
    dest.parent.mkdir(parents=True, exist_ok=True)
    partial = dest.with_suffix(dest.suffix + ".part")
    log(f"downloading {entry['filename']} from {urllib.parse.urlsplit(entry['url']).netloc}")
    with urllib.request.urlopen(entry["url"], timeout=300) as response, open(partial, "wb") as out:
        total = int(response.headers.get("Content-Length") or 0)
        done = 0
        next_report = 0.0
        while chunk := response.read(1 << 20):
            out.write(chunk)
            done += len(chunk)
            if total and done / total >= next_report:
                log(f"  {done >> 20} / {total >> 20} MiB")
                next_report += 0.25
    actual = sha256_of(partial)
    if expected and actual != expected:
        partial.unlink()
        raise ValueError(f"{entry['filename']}: sha256 {actual} does not match the pinned {expected}")
    partial.replace(dest)
    return dest
