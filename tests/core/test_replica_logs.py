"""The local runtime's replica log files: written with rotation, read back as a tail from their end."""

from __future__ import annotations

import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

from core.replica_logs import LogWriter, ReplicaRecord, prune, read_lines, read_records, write_record


class Clock:
    def __init__(self) -> None:
        self.now = datetime(2026, 11, 29, 12, 0, tzinfo=UTC)

    def __call__(self) -> datetime:
        self.now += timedelta(seconds=1)
        return self.now


def test_a_tail_spans_rotated_files_and_merges_replicas_in_time_order(tmp_path: Path) -> None:
    clock = Clock()
    first = LogWriter(tmp_path / "a.log", max_bytes=2_000, keep=3, clock=clock)
    second = LogWriter(tmp_path / "b.log", max_bytes=2_000, keep=3, clock=clock)
    for i in range(300):
        (first if i % 3 else second).write("stderr" if i % 2 else "stdout", f"line {i:02d} ü")
    first.close()
    second.close()
    assert len(list(tmp_path.glob("a.log.*"))) == 3  # rotated, the oldest dropped

    both = read_lines(tmp_path, replicas=["a", "b"], tail=10)
    assert [x.line for x in both] == [f"line {i:02d} ü" for i in range(290, 300)]
    assert [x.replica for x in both] == ["a" if i % 3 else "b" for i in range(290, 300)]
    assert [x.stream for x in both][:2] == ["stdout", "stderr"]
    a_only = read_lines(tmp_path, replicas=["a"], tail=1000)
    assert [x.line for x in a_only] == sorted(x.line for x in a_only)  # every kept line once, oldest first
    assert "line 299 ü" in [x.line for x in a_only]
    assert "line 01 ü" not in [x.line for x in a_only]  # in the dropped file

    since = both[3].time
    window = read_lines(tmp_path, replicas=["a", "b"], since=since, until=both[6].time, tail=100)
    assert [x.line for x in window] == [x.line for x in both[3:6]]
    found = read_lines(tmp_path, replicas=["a", "b"], search="line 25", tail=3)
    assert [x.line for x in found] == ["line 257 ü", "line 258 ü", "line 259 ü"]


def test_a_line_cut_by_a_crash_is_skipped(tmp_path: Path) -> None:
    writer = LogWriter(tmp_path / "r.log")
    writer.write("stdout", "whole")
    writer.close()
    with (tmp_path / "r.log").open("ab") as handle:
        handle.write(b'{"time": "2026-11-29T12:00:0')  # a writer killed mid-line
    assert [x.line for x in read_lines(tmp_path, replicas=["r"], tail=5)] == ["whole"]
    assert read_lines(tmp_path, replicas=["missing"], tail=5) == []


def test_prune_removes_what_is_past_retention_and_keeps_the_rest(tmp_path: Path) -> None:
    clock = Clock()
    logs = tmp_path / "logs"
    folder = logs / "endpoint1"
    running = LogWriter(folder / "run.log", max_bytes=500, keep=3, clock=clock)
    for i in range(40):
        running.write("stdout", f"line {i}")
    running.close()
    rotated = sorted(folder.glob("run.log.*"))
    assert len(rotated) == 3
    old, recent = rotated[-1], rotated[0]  # .3 is the oldest
    now = clock.now
    os.utime(old, (now.timestamp() - 40 * 86400,) * 2)
    write_record(folder, ReplicaRecord("run", started_at=now - timedelta(days=50)))
    gone_long_ago = ReplicaRecord("old", now - timedelta(days=45), stopped_at=now - timedelta(days=31))
    gone_lately = ReplicaRecord("late", now - timedelta(days=45), stopped_at=now - timedelta(days=29))
    for record in (gone_long_ago, gone_lately):
        write_record(folder, record)
        (folder / f"{record.id}.log").write_text("{}\n")
        (folder / f"{record.id}.log.1").write_text("{}\n")

    assert prune(logs, before=now - timedelta(days=30)) == 4  # old's record and 2 logs, run's oldest rotation

    assert {p.name for p in folder.iterdir()} == {
        "run.json",
        "run.log",
        recent.name,
        rotated[1].name,
        "late.json",
        "late.log",
        "late.log.1",
    }
    assert {r.id for r in read_records(folder)} == {"late", "run"}
    assert prune(logs, before=now - timedelta(days=30)) == 0
    assert prune(tmp_path / "absent", before=now) == 0
