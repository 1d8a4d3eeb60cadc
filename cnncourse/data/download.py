"""Downloads that never hang and never leave a half file that passes as complete.

``download_file`` streams a URL into ``<file>.part`` with a progress bar, hashes it on the way
(SHA-256), resumes an interrupted ``.part`` with an HTTP Range request when the server allows it,
checks size and checksum, and only then renames the file into place (``os.replace`` is atomic).
``check_reachable`` fails within seconds when the network or the host is unreachable, DNS
included (a plain ``socket`` timeout does not cover DNS look-ups).
"""
from __future__ import annotations

import contextlib
import hashlib
import os
import socket
import threading
import urllib.error
import urllib.parse
import urllib.request
from pathlib import Path
from typing import Iterable, Iterator, Optional

from tqdm.auto import tqdm

from cnncourse.data.errors import ChecksumError, DataUnavailableError

# Seconds to wait for a host to answer (DNS, connect, or a stalled read) before giving up.
NETWORK_TIMEOUT = 10.0
CHUNK_SIZE = 1 << 20
USER_AGENT = "cnncourse-downloader/0.1 (Python urllib)"


# MD5 checks (MNIST, CIFAR-10) use torchvision.datasets.utils; SHA-256 stays here because
# torchvision's helpers only do MD5 and astroNN publishes SHA-256 sums for the Galaxy10 files.
def sha256_file(path: "str | os.PathLike[str]", progress: bool = False) -> str:
    """SHA-256 of a file, read in 1 MiB chunks (with a progress bar when asked)."""
    digest = hashlib.sha256()
    size = os.path.getsize(path)
    with open(path, "rb") as f, tqdm(total=size, unit="B", unit_scale=True, disable=not progress,
                                      desc=f"checking {Path(path).name}", leave=False) as bar:
        while chunk := f.read(CHUNK_SIZE):
            digest.update(chunk)
            bar.update(len(chunk))
    return digest.hexdigest()


def _endpoint(url: str) -> "tuple[str, int]":
    """The host and port a request for ``url`` really connects to (a proxy when one is configured)."""
    parts = urllib.parse.urlsplit(url)
    proxy = urllib.request.getproxies().get(parts.scheme)
    if proxy and not urllib.request.proxy_bypass(parts.hostname or ""):
        proxy_parts = urllib.parse.urlsplit(proxy if "://" in proxy else "http://" + proxy)
        return proxy_parts.hostname or "", proxy_parts.port or 80
    return parts.hostname or "", parts.port or (443 if parts.scheme == "https" else 80)


def check_reachable(url: str, timeout: Optional[float] = None) -> Optional[str]:
    """Try to open a TCP connection to ``url``'s host; return None if it works, else the reason.

    The attempt runs in a daemon thread joined with ``timeout`` seconds, so a hanging DNS look-up
    cannot block the caller. ``file://`` URLs are always reachable.
    """
    return first_unreachable_reason([url], timeout)


def first_unreachable_reason(urls: Iterable[str], timeout: Optional[float] = None) -> Optional[str]:
    """None if any of ``urls`` is reachable, else the reason the first one is not.

    Every distinct host is tried at once, each in a daemon thread, and the whole check takes at
    most ``timeout`` seconds however many mirrors there are.
    """
    timeout = NETWORK_TIMEOUT if timeout is None else timeout
    urls = list(urls)
    if not urls or any(urllib.parse.urlsplit(url).scheme == "file" for url in urls):
        return None
    endpoints = list(dict.fromkeys(_endpoint(url) for url in urls))
    outcomes: dict = {}
    done = threading.Event()

    def attempt(endpoint: "tuple[str, int]") -> None:
        try:
            with socket.create_connection(endpoint, timeout=timeout):
                pass
            outcomes[endpoint] = None
            done.set()
        except OSError as error:
            outcomes[endpoint] = f"{type(error).__name__}: {error}"
            if len(outcomes) == len(endpoints):
                done.set()

    for endpoint in endpoints:
        threading.Thread(target=attempt, args=(endpoint,), daemon=True, name="cnncourse-reachability").start()
    done.wait(timeout)
    if any(outcomes.get(endpoint, "") is None for endpoint in endpoints):
        return None
    first = endpoints[0]
    return outcomes.get(first) or f"no answer from {first[0]}:{first[1]} within {timeout:g} s"


@contextlib.contextmanager
def network_timeout(seconds: Optional[float] = None) -> Iterator[None]:
    """Give every new socket a timeout while the block runs (for third-party download code)."""
    previous = socket.getdefaulttimeout()
    socket.setdefaulttimeout(NETWORK_TIMEOUT if seconds is None else seconds)
    try:
        yield
    finally:
        socket.setdefaulttimeout(previous)


def part_path(path: "str | os.PathLike[str]") -> Path:
    """Where an unfinished download of ``path`` is kept (never mistaken for the file itself)."""
    path = Path(path)
    return path.with_name(path.name + ".part")


def download_file(url: str, path: "str | os.PathLike[str]", sha256: Optional[str] = None,
                  size: Optional[int] = None, timeout: Optional[float] = None,
                  progress: bool = True, resume: bool = True) -> Path:
    """Download ``url`` to ``path`` safely; return ``path``.

    Streams into ``path + '.part'`` while computing SHA-256; resumes an existing ``.part`` when the
    server honours HTTP Range; checks ``size`` and ``sha256`` when given; renames into place only
    when everything matches. A connection that drops leaves the ``.part`` (to resume next time)
    and raises :class:`DataUnavailableError`; a wrong checksum deletes the ``.part`` and raises
    :class:`ChecksumError`. Errors from urllib/sockets are not caught here except a short read.
    """
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    part = part_path(path)
    timeout = NETWORK_TIMEOUT if timeout is None else timeout
    digest = hashlib.sha256()
    offset = part.stat().st_size if (resume and part.exists()) else 0
    if size is not None and offset >= size:  # nothing left to fetch: start again rather than trust it
        offset = 0
    headers = {"User-Agent": USER_AGENT}
    if offset:
        headers["Range"] = f"bytes={offset}-"
    try:
        response = urllib.request.urlopen(urllib.request.Request(url, headers=headers), timeout=timeout)
    except urllib.error.HTTPError as error:
        if error.code != 416 or not offset:  # 416: the server refuses our Range; fetch it whole
            raise
        offset = 0
        response = urllib.request.urlopen(urllib.request.Request(url, headers={"User-Agent": USER_AGENT}),
                                          timeout=timeout)
    with response:
        status = getattr(response, "status", 200)
        if offset and status == 206:
            with open(part, "rb") as f:  # hash what we already have, then append
                while chunk := f.read(CHUNK_SIZE):
                    digest.update(chunk)
            mode = "ab"
        else:
            offset, mode = 0, "wb"
        length = response.headers.get("Content-Length")
        expected = offset + int(length) if length is not None else size
        received = offset
        with open(part, mode) as out, tqdm(total=expected, initial=offset, unit="B", unit_scale=True,
                                           unit_divisor=1024, desc=path.name, disable=not progress) as bar:
            while True:
                try:
                    chunk = response.read(CHUNK_SIZE)
                except (OSError, ValueError) as error:  # IncompleteRead, reset connection, timeout
                    raise DataUnavailableError(
                        f"the download of {url} was interrupted after {received:,} bytes ({error}); "
                        f"the partial file {part} is kept and the next attempt resumes it."
                    ) from error
                if not chunk:
                    break
                out.write(chunk)
                digest.update(chunk)
                received += len(chunk)
                bar.update(len(chunk))
    if expected is not None and received < expected:
        raise DataUnavailableError(
            f"the download of {url} stopped after {received:,} of {expected:,} bytes; the partial file "
            f"{part} is kept and the next attempt resumes it.")
    if (size is not None and received != size) or (sha256 is not None and digest.hexdigest() != sha256.lower()):
        part.unlink(missing_ok=True)
        raise ChecksumError(
            f"the file {path} downloaded from {url} is not the expected one: got {received:,} bytes with "
            f"SHA-256 {digest.hexdigest()}, expected "
            f"{'%s bytes' % format(size, ',') if size is not None else 'any size'} with SHA-256 "
            f"{sha256 or '(not checked)'}. The partial file was deleted; try again later.")
    os.replace(part, path)
    if sha256 is not None:
        write_verified_marker(path, digest.hexdigest())
    return path


# A file is hashed once; later loads compare its size and modification time with this marker.
def marker_path(path: "str | os.PathLike[str]") -> Path:
    path = Path(path)
    return path.with_name(path.name + ".sha256")


def write_verified_marker(path: "str | os.PathLike[str]", sha256: str) -> None:
    """Remember a successful check (silently skipped in a read-only folder: it is only a cache)."""
    stat = os.stat(path)
    try:
        marker_path(path).write_text(f"{sha256}  {Path(path).name}  {stat.st_size}  {stat.st_mtime_ns}\n")
    except OSError:
        pass


def is_verified(path: "str | os.PathLike[str]", sha256: str) -> bool:
    """True when a marker says ``path`` was hashed to ``sha256`` and it has not changed since."""
    marker = marker_path(path)
    try:
        digest, _name, size, mtime = marker.read_text().split()
        stat = os.stat(path)
    except (OSError, ValueError):
        return False
    return digest == sha256.lower() and int(size) == stat.st_size and int(mtime) == stat.st_mtime_ns


def describe_url_error(error: BaseException) -> str:
    """A short reason from a urllib/socket error (``URLError`` wraps the interesting part)."""
    if isinstance(error, urllib.error.HTTPError):
        return f"HTTP {error.code} {error.reason}"
    if isinstance(error, urllib.error.URLError):
        return f"{type(error.reason).__name__}: {error.reason}"
    return f"{type(error).__name__}: {error}"
