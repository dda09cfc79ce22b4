"""The local runtime's replica logs, kept under ``DAIS_HOME/logs/<endpoint id>/``: written by the runtime
(``controller.local``), read by the API's logs route.

- ``<replica>.log``: one JSON object per line of the replica's output, ``{"time", "stream", "line"}``, the time
  taken as the line arrived (an engine's own lines carry no reliable time of their own), rotated at a size to
  ``.1`` … ``.N`` (oldest last);
- ``<replica>.json``: when it started and stopped, its restarts and its last exit code, rewritten atomically.

A replica's files outlive its process: stopped replicas stay listed, with their times, until the endpoint is
deleted or ``DAIS_LOGS__RETENTION_DAYS`` after they stopped (``prune``); readers never show a line older than
that either.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Callable, Iterator
from dataclasses import asdict, dataclass
from datetime import UTC, datetime
from pathlib import Path

from core.domain.timefmt import utc_now

MAX_BYTES = 10 * 2**20
KEEP = 3


@dataclass(frozen=True, slots=True)
class LogLine:
    time: datetime
    replica: str
    stream: str  # "stdout" | "stderr"
    line: str


@dataclass(frozen=True, slots=True)
class ReplicaRecord:
    id: str
    started_at: datetime
    stopped_at: datetime | None = None
    restarts: int = 0
    exit_code: int | None = None


def directory(home: Path, endpoint_id: str) -> Path:
    return home / "logs" / endpoint_id


class LogWriter:
    """Appends a replica's lines, from its stdout and stderr readers at once, rotating past ``max_bytes``."""

    def __init__(
        self, path: Path, *, max_bytes: int = MAX_BYTES, keep: int = KEEP, clock: Callable[[], datetime] = utc_now
    ) -> None:
        self.path, self.max_bytes, self.keep, self.clock = path, max_bytes, keep, clock
        self._lock = threading.Lock()
        path.parent.mkdir(parents=True, exist_ok=True)
        self._out = path.open("ab")

    def write(self, stream: str, line: str) -> None:
        with self._lock:  # timed under the lock: a file's lines are in time order (readers rely on it)
            if self._out.closed:
                return
            record = json.dumps({"time": _iso(self.clock()), "stream": stream, "line": line}, ensure_ascii=False)
            self._out.write(record.encode() + b"\n")
            self._out.flush()
            if self._out.tell() >= self.max_bytes:
                self._rotate()

    def close(self) -> None:
        with self._lock:
            self._out.close()

    def _rotate(self) -> None:
        self._out.close()
        for index in range(self.keep - 1, 0, -1):
            older = self.path.with_name(f"{self.path.name}.{index}")
            if older.exists():
                older.replace(self.path.with_name(f"{self.path.name}.{index + 1}"))
        self.path.replace(self.path.with_name(f"{self.path.name}.1"))
        self._out = self.path.open("ab")


def write_record(folder: Path, record: ReplicaRecord) -> None:
    folder.mkdir(parents=True, exist_ok=True)
    fields = {k: _iso(v) if isinstance(v, datetime) else v for k, v in asdict(record).items()}
    target = folder / f"{record.id}.json"
    tmp = target.with_suffix(".tmp")
    tmp.write_text(json.dumps(fields))
    tmp.replace(target)


def read_records(folder: Path) -> list[ReplicaRecord]:
    """Every replica the endpoint has had (that still has files), oldest first."""
    found = []
    for path in folder.glob("*.json"):
        try:
            raw = json.loads(path.read_text())
            found.append(
                ReplicaRecord(
                    id=str(raw["id"]),
                    started_at=_parse(raw["started_at"]),
                    stopped_at=_parse(raw["stopped_at"]) if raw.get("stopped_at") else None,
                    restarts=int(raw.get("restarts") or 0),
                    exit_code=raw.get("exit_code"),
                )
            )
        except (OSError, ValueError, KeyError, TypeError):
            continue  # being rewritten, or not ours
    return sorted(found, key=lambda r: r.started_at)


def read_lines(
    folder: Path,
    *,
    replicas: list[str],
    since: datetime | None = None,
    until: datetime | None = None,
    search: str | None = None,
    tail: int,
) -> list[LogLine]:
    """The last ``tail`` lines of ``replicas`` in time order, within [``since``, ``until``) and containing
    ``search``. Each replica's files are read backwards from their end, so a tail costs what it shows, not the
    size of the files (a replica's lines are in time order: they are timed as they are written)."""
    lines: list[LogLine] = []
    for replica in replicas:
        found: list[LogLine] = []
        for line in _lines_backwards(folder, replica):
            if since is not None and line.time < since:
                break
            if (until is None or line.time < until) and (not search or search in line.line):
                found.append(line)
                if len(found) == tail:
                    break
        lines.extend(found)
    lines.sort(key=lambda line: line.time)
    return lines[-tail:]


def prune(logs: Path, *, before: datetime) -> int:
    """Removes under ``logs`` (every endpoint's folder) what holds nothing newer than ``before``: rotated files
    last written before it, and replicas that stopped before it (their record and files). How many files went."""
    cutoff = before.timestamp()
    removed = 0
    for folder in (p for p in logs.iterdir() if p.is_dir()) if logs.is_dir() else ():
        gone = {r.id for r in read_records(folder) if r.stopped_at is not None and r.stopped_at < before}
        for path in folder.iterdir():
            replica, _, rest = path.name.partition(".")
            rotated = rest.startswith("log.") and rest[4:].isdigit()
            try:
                if replica in gone or (rotated and path.stat().st_mtime < cutoff):
                    path.unlink()
                    removed += 1
            except FileNotFoundError:
                continue  # rotated or removed meanwhile
    return removed


def _lines_backwards(folder: Path, replica: str) -> Iterator[LogLine]:
    """A replica's lines, newest first: its current file from the end, then the rotated ones (``.1`` is the
    newest of those)."""
    rotated = sorted(
        (p for p in folder.glob(f"{replica}.log.*") if p.suffix[1:].isdigit()), key=lambda p: int(p.suffix[1:])
    )
    for path in [folder / f"{replica}.log", *rotated]:
        for raw in _backwards(path):
            try:
                record = json.loads(raw)
                yield LogLine(_parse(record["time"]), replica, str(record["stream"]), str(record["line"]))
            except (ValueError, KeyError, TypeError):
                continue  # a line cut by a crash of the writer


def _backwards(path: Path, block: int = 1 << 16) -> Iterator[bytes]:
    """The file's complete lines, last first, read a block at a time from its end."""
    try:
        handle = path.open("rb")
    except OSError:
        return
    with handle:
        position = handle.seek(0, 2)
        rest = b""
        while position > 0:
            step = min(block, position)
            position -= step
            handle.seek(position)
            chunk = handle.read(step) + rest
            parts = chunk.split(b"\n")
            rest = parts[0]  # may continue in the block before
            for part in reversed(parts[1:]):
                if part:
                    yield part
        if rest:
            yield rest


def _iso(when: datetime) -> str:
    return when.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def _parse(text: str) -> datetime:
    return datetime.fromisoformat(text.replace("Z", "+00:00"))


class Follower:
    """The lines that arrive after it was made, by byte offset in each replica's file. A file that shrank was
    rotated: it is read again from its start (a burst that filled a whole file meanwhile is skipped)."""

    def __init__(self, folder: Path, replica: str | None) -> None:
        self.folder, self.replica = folder, replica
        self._offsets = {path: path.stat().st_size for path in self._files()}

    def new_lines(self) -> list[LogLine]:
        found: list[LogLine] = []
        for path in self._files():
            size = path.stat().st_size
            offset = self._offsets.get(path, 0)
            if size < offset:
                offset = 0
            if size == offset:
                continue
            with path.open("rb") as handle:
                handle.seek(offset)
                chunk = handle.read(size - offset)
            complete = chunk.rfind(b"\n") + 1  # a line still being written waits for the next look
            self._offsets[path] = offset + complete
            for raw in chunk[:complete].decode(errors="replace").splitlines():
                try:
                    record = json.loads(raw)
                    found.append(LogLine(_parse(record["time"]), path.stem, str(record["stream"]), str(record["line"])))
                except (ValueError, KeyError, TypeError):
                    continue
        return sorted(found, key=lambda line: line.time)

    def _files(self) -> list[Path]:
        pattern = f"{self.replica}.log" if self.replica else "*.log"
        return [path for path in self.folder.glob(pattern) if path.is_file()]
