"""``dais model fetch``: fill a replica's /repository with one pinned revision, safely and only once.

Invariants:
- Nothing is written outside ``dest``: remote paths with ``..``, absolute paths or backslashes are refused,
  and so is any path that would pass through a symlink already in ``dest``.
- A file counts as present only when its size matches and the fetch manifest (``dest/.dais-fetch.json``)
  records it complete at the same content hash, so a second start makes no download at all. A file
  interrupted half-way (even by a killed container) resumes from ``dest/.dais-partial`` with a Range request.
- Every downloaded LFS file's sha256 is checked against the Hub's, hashed as the bytes arrive (no second read),
  before it is moved into place and recorded complete.
- Safetensors are preferred: pickled weights (.bin, .pt, …) are skipped when a repo has safetensors.
- Failure exits non-zero with one message (also written to the container's termination log, which the
  controller shows in the endpoint's status) saying what to do.
"""

from __future__ import annotations

import contextlib
import errno
import fnmatch
import hashlib
import http.client
import json
import os
import shutil
import ssl
import sys
import threading
import time
from collections.abc import Callable, Sequence
from concurrent.futures import ThreadPoolExecutor, as_completed
from dataclasses import dataclass, field
from pathlib import Path, PurePosixPath
from typing import IO, Any, BinaryIO
from urllib.parse import urljoin, urlparse

import httpx2
from huggingface_hub import get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import GatedRepoError, HfHubHTTPError, RepositoryNotFoundError, RevisionNotFoundError
from huggingface_hub.utils import build_hf_headers, disable_progress_bars  # type: ignore[attr-defined]

from core.domain.fit import GIB
from core.retry import Backoff, GaveUp, retrying
from hub.client import HubClient, HubError, ModelFacts

MANIFEST = ".dais-fetch.json"
PARTIAL = ".dais-partial"
PICKLED = (".bin", ".pt", ".pth", ".ckpt", ".h5", ".msgpack")
TERMINATION_LOG = Path("/dev/termination-log")
DOWNLOAD_BACKOFF = Backoff(base=1.0, cap=10.0)  # waits 0.5-1 s, 1-2 s, 2-4 s, 4-8 s, then 5-10 s


class FetchError(Exception):
    """Fetch cannot complete; the message says what to do."""


@dataclass
class FetchReport:
    files: list[str] = field(default_factory=list)
    downloaded: list[str] = field(default_factory=list)
    cached: list[str] = field(default_factory=list)
    bytes_downloaded: int = 0
    seconds: float = 0.0


def select_files(facts: ModelFacts, include: Sequence[str] | None) -> list[str]:
    """What to fetch: ``include`` patterns, or everything but pickles when safetensors exist."""
    names = sorted(facts.files)
    if include:
        return [n for n in names if any(fnmatch.fnmatchcase(n, pattern) for pattern in include)]
    has_safetensors = any(n.endswith(".safetensors") for n in names)
    chosen = []
    for name in names:
        if has_safetensors and name.endswith(PICKLED):
            continue
        if name.endswith(".gguf"):  # llama.cpp names its one file with --include
            continue
        chosen.append(name)
    return chosen


def safe_target(dest: Path, remote: str) -> Path:
    """Where a remote file goes, refusing anything that would land outside ``dest``."""
    path = PurePosixPath(remote)
    if not remote or "\\" in remote or path.is_absolute() or any(part in ("..", "") for part in remote.split("/")):
        raise FetchError(f"refusing remote path {remote!r}: it would be written outside {dest}")
    target = dest.joinpath(*path.parts)
    current = dest
    for part in path.parts[:-1]:
        current = current / part
        if current.is_symlink():
            raise FetchError(f"refusing remote path {remote!r}: {current} is a symlink")
    if target.is_symlink():
        raise FetchError(f"refusing remote path {remote!r}: {target} is a symlink")
    resolved_dest = dest.resolve()
    if resolved_dest not in target.resolve().parents:
        raise FetchError(f"refusing remote path {remote!r}: it resolves outside {dest}")
    return target


class Manifest:
    """Which files are complete, and at which content hash; rewritten atomically after each file."""

    def __init__(self, dest: Path) -> None:
        self._path = dest / MANIFEST
        self._lock = threading.Lock()
        try:
            self.entries: dict[str, dict[str, object]] = json.loads(self._path.read_text())
        except (OSError, ValueError):
            self.entries = {}

    def complete(self, name: str, *, size: int | None, digest: str) -> bool:
        entry = self.entries.get(name)
        return entry is not None and entry.get("size") == size and entry.get("digest") == digest

    def record(self, name: str, *, size: int | None, digest: str) -> None:
        with self._lock:
            self.entries[name] = {"size": size, "digest": digest}
            tmp = self._path.with_suffix(".tmp")
            tmp.write_text(json.dumps(self.entries, sort_keys=True))
            tmp.replace(self._path)


def fetch(
    *,
    repository: str,
    revision: str,
    dest: Path,
    include: Sequence[str] | None,
    token: str | None,
    endpoint: str | None,
    workers: int = 8,
    deadline: float = 60.0,
    attempts: int = 5,
    out: IO[str] = sys.stderr,
    clock: Callable[[], float] = time.monotonic,
    progress: Callable[[int, int], None] | None = None,
) -> FetchReport:
    """``progress(done, total)``: bytes downloaded so far and bytes to download, called as they arrive (from the
    download threads; a restarted file counts again from its start)."""
    began = clock()
    disable_progress_bars()  # one line per file instead, readable in `kubectl logs`
    dest.mkdir(parents=True, exist_ok=True)
    client = HubClient(endpoint=endpoint, timeout=30, deadline=deadline)
    try:
        facts = client.model(repository, revision, token)
    except HubError as exc:
        raise FetchError(exc.message) from None
    names = select_files(facts, include)
    if include and not names:
        raise FetchError(f"no file of {repository} matches {', '.join(include)}: check the file name")
    manifest = Manifest(dest)
    report = FetchReport(files=names)
    missing: list[str] = []
    for name in names:
        target = safe_target(dest, name)
        size = facts.files.get(name)
        if (
            target.is_file()
            and target.stat().st_size == size
            and manifest.complete(name, size=size, digest=_digest(facts, name))
        ):
            report.cached.append(name)
        else:
            missing.append(name)
    for name in missing:  # a stale or damaged copy goes first (a partial download in PARTIAL is kept)
        safe_target(dest, name).unlink(missing_ok=True)
    need = sum(facts.files.get(n) or 0 for n in missing)
    print(
        f"fetch {repository}@{facts.sha[:12]}: {len(names)} files, {len(report.cached)} already present, "
        f"{len(missing)} to download ({need / GIB:.2f} GiB)",
        file=out,
        flush=True,
    )
    _check_space(dest, need)
    arrived = [0]
    counting = threading.Lock()

    def count(size: int) -> None:
        if progress is not None:
            with counting:
                arrived[0] += size
                progress(arrived[0], need)

    if missing:
        done = threading.Lock()
        with ThreadPoolExecutor(max_workers=max(1, min(workers, len(missing)))) as pool:
            futures = {
                pool.submit(
                    _download_one,
                    name,
                    facts=facts,
                    dest=dest,
                    token=token,
                    endpoint=endpoint,
                    attempts=attempts,
                    on_bytes=count,
                ): name
                for name in missing
            }
            for future in as_completed(futures):
                name = futures[future]
                try:
                    future.result()
                except FetchError:
                    for other in futures:
                        other.cancel()
                    raise
                size = facts.files.get(name)
                manifest.record(name, size=size, digest=_digest(facts, name))
                with done:
                    report.downloaded.append(name)
                    report.bytes_downloaded += size or 0
                    rate = report.bytes_downloaded / max(clock() - began, 1e-6) / 2**20
                    print(
                        f"  {name} ({(size or 0) / GIB:.2f} GiB) [{len(report.downloaded)}/{len(missing)}, "
                        f"{report.bytes_downloaded / GIB:.2f} GiB at {rate:.0f} MiB/s]",
                        file=out,
                        flush=True,
                    )
    report.seconds = clock() - began
    _mark_complete(dest, include)
    print(f"fetch complete in {report.seconds:.1f}s", file=out, flush=True)
    return report


COMPLETE = ".dais-complete"  # one line per include set fetched completely ("*" for the whole revision)


def fetched(dest: Path, include: Sequence[str] | None) -> bool:
    """Whether ``dest`` already holds a complete fetch of ``include`` (the local runtime's cache hit: no Hub
    request at all). Each of its files is still there at the recorded size."""
    try:
        lines = (dest / COMPLETE).read_text().splitlines()
    except OSError:
        return False
    if _include_key(include) not in lines:
        return False
    manifest = Manifest(dest)
    names = list(include) if include else list(manifest.entries)
    return all(
        (dest / name).is_file() and (dest / name).stat().st_size == manifest.entries.get(name, {}).get("size")
        for name in names
    )


def _include_key(include: Sequence[str] | None) -> str:
    return ",".join(sorted(include)) if include else "*"


def _mark_complete(dest: Path, include: Sequence[str] | None) -> None:
    path = dest / COMPLETE
    lines = path.read_text().splitlines() if path.exists() else []
    if _include_key(include) not in lines:
        tmp = path.with_suffix(".tmp")
        tmp.write_text("\n".join([*lines, _include_key(include)]) + "\n")
        tmp.replace(path)


def _digest(facts: ModelFacts, name: str) -> str:
    return facts.lfs_sha256.get(name) or f"{facts.sha}:{name}"


class _HashingWriter:
    """A file that hashes what is written, so a download is verified without reading it back.

    ``_get_body`` rewinds and truncates when a server ignores a Range request; the hash then restarts.
    """

    def __init__(self, handle: BinaryIO, digest: Any, on_bytes: Callable[[int], None]) -> None:
        self._handle = handle
        self.digest = digest
        self._on_bytes = on_bytes

    def write(self, data: bytes | memoryview) -> int:
        self.digest.update(data)
        self._on_bytes(len(data))
        return self._handle.write(data)

    def tell(self) -> int:
        return self._handle.tell()

    def seek(self, offset: int, whence: int = 0) -> int:
        position = self._handle.seek(offset, whence)
        if position == 0:
            self.digest = hashlib.sha256()
        return position

    def truncate(self, size: int | None = None) -> int:
        return self._handle.truncate(size)

    def flush(self) -> None:
        self._handle.flush()


def _download_one(
    name: str,
    *,
    facts: ModelFacts,
    dest: Path,
    token: str | None,
    endpoint: str | None,
    attempts: int,
    on_bytes: Callable[[int], None] = lambda _: None,
    sleep: Callable[[float], None] = time.sleep,
) -> None:
    """One file, through huggingface_hub's metadata and download functions, into a partial file kept across
    restarts (``dest/.dais-partial``): a replica killed half-way resumes where it stopped."""
    expected_sha = facts.lfs_sha256.get(name)
    size = facts.files.get(name)
    partial = dest / PARTIAL / f"{name}.part"
    partial.parent.mkdir(parents=True, exist_ok=True)
    url = hf_hub_url(facts.repository, name, revision=facts.sha, endpoint=endpoint)

    def attempt() -> _HashingWriter:
        meta = get_hf_file_metadata(url, token=token or False)
        headers = build_hf_headers(token=token or False)
        if urlparse(meta.location).netloc != urlparse(url).netloc:
            headers.pop("authorization", None)  # a signed CDN URL: the token stays with the Hub
        have = partial.stat().st_size if partial.exists() else 0
        if size is not None and have > size:
            partial.unlink()
            have = 0
        digest = hashlib.sha256()
        with partial.open("a+b") as handle:
            if have:
                handle.seek(0)
                digest = hashlib.file_digest(handle, "sha256")
            handle.seek(have)
            on_bytes(have)  # a resumed file: what is already here counts as arrived
            writer = _HashingWriter(handle, digest, on_bytes)
            _get_body(meta.location, writer, resume=have, headers=headers, expected=size)
        return writer

    try:
        writer = retrying(attempt, backoff=DOWNLOAD_BACKOFF, transient=_transient, attempts=attempts, sleep=sleep)
    except GatedRepoError:
        raise FetchError(
            f"model {facts.repository} is gated: accept its licence on the Hub with the account whose token the "
            "endpoint uses (the namespace's Hub token or the endpoint's HF_TOKEN secret), then restart"
        ) from None
    except (RepositoryNotFoundError, RevisionNotFoundError) as exc:
        raise FetchError(f"{facts.repository}@{facts.sha}: {exc}") from None
    except (HfHubHTTPError, _BodyStatus) as exc:
        if isinstance(exc, _BodyStatus):
            status = exc.status
        else:
            status = exc.response.status_code if exc.response is not None else 0
        if status in (401, 403):
            raise FetchError(
                f"the Hub refused {name} of {facts.repository} ({status}): use a token with read access "
                "(the namespace's Hub token or the endpoint's HF_TOKEN secret)"
            ) from None
        raise FetchError(f"downloading {name} failed: {exc}") from None
    except OSError:  # not transient: only a full disk is refused at once
        raise FetchError(_no_space(dest, size or 0)) from None
    except GaveUp as exc:
        if isinstance(exc.last, HfHubHTTPError | _BodyStatus):
            raise FetchError(f"downloading {name} failed: {exc.last}") from None
        raise FetchError(f"downloading {name} failed after {exc.attempts} attempts: {exc.last}") from None
    got = partial.stat().st_size
    if size is not None and got != size:
        partial.unlink(missing_ok=True)
        raise FetchError(f"{name}: got {got} bytes, the Hub says {size}: restart to download it again")
    if expected_sha is not None and writer.digest.hexdigest() != expected_sha:
        partial.unlink(missing_ok=True)
        raise FetchError(
            f"{name}: sha256 {writer.digest.hexdigest()} does not match the Hub's {expected_sha}: restart to "
            "download it again"
        )
    target = safe_target(dest, name)
    target.parent.mkdir(parents=True, exist_ok=True)
    os.replace(partial, target)


class _BodyStatus(Exception):
    """The file's bytes were refused with this HTTP status."""

    def __init__(self, status: int, url: str) -> None:
        super().__init__(f"HTTP {status} for {urlparse(url).path}")
        self.status = status


BODY_BUFFER = 4 * 2**20  # bytes per read: few Python steps per megabyte, hashing and writing without the GIL
BODY_TIMEOUT_S = 60.0
MAX_REDIRECTS = 5


def _get_body(url: str, writer: _HashingWriter, *, resume: int, headers: dict[str, str], expected: int | None) -> None:
    """A file's bytes into ``writer``, from ``resume`` on (a Range request; a server that ignores it sends the
    whole file and the writer starts over). The socket reads straight into one reused buffer: huggingface_hub's
    ``http_get`` re-chunked every 64 KiB read through httpx's pure-Python HTTP/1.1 parser, and at a few hundred
    MiB/s that, not hashing or the disk, was the limit on a small machine."""
    for _ in range(MAX_REDIRECTS + 1):
        parts = urlparse(url)
        connection: http.client.HTTPConnection = (
            http.client.HTTPSConnection(parts.netloc, timeout=BODY_TIMEOUT_S, context=ssl.create_default_context())
            if parts.scheme == "https"
            else http.client.HTTPConnection(parts.netloc, timeout=BODY_TIMEOUT_S)
        )
        try:
            ranged = {"Range": f"bytes={resume}-"} if resume else {}
            target = parts.path + (f"?{parts.query}" if parts.query else "")
            connection.request("GET", target, headers={**headers, **ranged})
            response = connection.getresponse()
            if response.status in (301, 302, 303, 307, 308) and response.getheader("location"):
                moved = urljoin(url, response.getheader("location", ""))
                if urlparse(moved).netloc != parts.netloc:
                    headers = {k: v for k, v in headers.items() if k.lower() != "authorization"}
                url = moved
                continue
            if response.status == 416 and expected is not None and resume == expected:
                return  # everything is already here
            if response.status not in (200, 206):
                raise _BodyStatus(response.status, url)
            if resume and response.status == 200:
                writer.seek(0)  # the server ignored the Range: the whole file comes, and the hash starts over
                writer.truncate(0)
            buffer = bytearray(BODY_BUFFER)
            view = memoryview(buffer)
            announced = response.getheader("content-length")
            received = 0
            while True:
                got = response.readinto(buffer)
                if not got:
                    break
                writer.write(view[:got])
                received += got
            if announced is not None and received < int(announced):  # readinto ends quietly on a closed socket
                raise http.client.IncompleteRead(b"", int(announced) - received)
            return
        finally:
            connection.close()
    raise _BodyStatus(310, url)  # too many redirects


def _transient(exc: Exception) -> bool:
    """Another try may help: a dropped connection, a timeout, 429 or 5xx, a local I/O error but a full disk."""
    if isinstance(exc, GatedRepoError | RepositoryNotFoundError | RevisionNotFoundError):
        return False
    if isinstance(exc, _BodyStatus):
        return exc.status == 429 or exc.status >= 500
    if isinstance(exc, http.client.HTTPException):  # a connection closed mid-body (IncompleteRead), a bad line
        return True
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    if isinstance(exc, OSError):
        return exc.errno != errno.ENOSPC
    return isinstance(exc, httpx2.TransportError)


def _check_space(dest: Path, need: int) -> None:
    free = shutil.disk_usage(dest).free
    if need > free:
        raise FetchError(_no_space(dest, need))


def _no_space(dest: Path, need: int) -> str:
    free = shutil.disk_usage(dest).free
    return (
        f"not enough disk space in {dest}: the model needs {_human(need)} more, {_human(free)} free: "
        "give the endpoint a larger volume or pick a smaller model"
    )


def _human(size: int) -> str:
    for unit, scale in (("GiB", GIB), ("MiB", 2**20), ("KiB", 2**10)):
        if size >= scale:
            return f"{size / scale:.1f} {unit}"
    return f"{size} bytes"


def report_failure(message: str, termination_log: Path = TERMINATION_LOG) -> None:
    """Kubernetes shows a container's termination log in its status; the controller reads it from there."""
    if termination_log.exists() and os.access(termination_log, os.W_OK):  # only where the kubelet provides it
        with contextlib.suppress(OSError):
            termination_log.write_text(message[:4000])
