"""The compiled request path (gateway/native.py): a build is used only for the exact sources it was built from."""

from __future__ import annotations

import os
import shutil
from pathlib import Path

import pytest

from gateway import native


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    """A copy of the sources a build depends on."""
    for package in ("gateway", "core"):
        shutil.copytree(native.ROOT / package, tmp_path / package, ignore=shutil.ignore_patterns("__pycache__"))
    return tmp_path


def test_the_key_follows_every_byte_of_the_sources(tree: Path) -> None:
    assert native.key(tree) == native.key(native.ROOT)
    server = tree / "gateway" / "server.py"
    server.write_text(server.read_text() + "\n")
    edited = native.key(tree)
    assert edited != native.key(native.ROOT)
    (tree / "core" / "extra.py").write_text("")  # a module mypyc may read, not only the compiled ones
    assert native.key(tree) != edited


def test_a_build_is_put_ahead_of_the_sources_only_when_it_matches_them(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("DAIS_NATIVE_CACHE", str(tmp_path))
    path = ["/src/gateway"]
    (tmp_path / "0123456789abcdef0123" / "gateway").mkdir(parents=True)  # a build of other sources
    assert native.load(path) is False
    assert path == ["/src/gateway"]

    built = tmp_path / native.key() / "gateway"
    built.mkdir(parents=True)
    monkeypatch.setenv("DAIS_GATEWAY_NATIVE", "0")
    assert native.load(path) is False  # turned off
    monkeypatch.setenv("DAIS_GATEWAY_NATIVE", "1")
    assert native.load(path) is True
    assert path == [str(built), "/src/gateway"]


def test_pruning_keeps_the_newest_builds_and_builds_in_progress(tmp_path: Path) -> None:
    for age, name in enumerate(("newest", "newer", "old", "oldest")):
        (tmp_path / name / "gateway").mkdir(parents=True)
        os.utime(tmp_path / name, (1_000_000 - age, 1_000_000 - age))
    (tmp_path / "building-x").mkdir()
    native.prune(tmp_path, keep=2)
    assert sorted(p.name for p in tmp_path.iterdir()) == ["building-x", "newer", "newest"]
