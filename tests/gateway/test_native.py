"""The compiled request path (gateway/native.py): a build is used only for the exact sources it was built from."""

from __future__ import annotations

import configparser
import os
import shutil
import tomllib
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


def test_an_installed_package_builds_from_a_copy_of_its_sources(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    """As the image builds it: the packages sit in site-packages beside other modules, with no pyproject.toml.
    mypy must not take that directory as its root, where typing_extensions.py would shadow the library stubs."""
    site = tmp_path / "site-packages"
    for package in native.PACKAGES:
        shutil.copytree(native.ROOT / package, site / package, ignore=shutil.ignore_patterns("__pycache__"))
    (site / "typing_extensions.py").write_text("")
    monkeypatch.setenv("DAIS_NATIVE_CACHE", str(tmp_path / "cache"))
    built = native.build(quiet=True, root=site, modules=("usage",))
    assert built == tmp_path / "cache" / native.key(site)
    assert [p.name.split(".")[0] for p in (built / "gateway").iterdir()] == ["usage"]
    assert [p.name for p in (tmp_path / "cache").iterdir()] == [built.name]  # the staging copy is gone


def test_the_build_checks_types_as_the_project_does() -> None:
    settings = tomllib.loads((native.ROOT / "pyproject.toml").read_text())["tool"]["mypy"]
    ini = configparser.ConfigParser()
    ini.read_string(native.MYPY_INI)
    assert ini["mypy"]["plugins"] == ", ".join(settings["plugins"])
    assert ini.getboolean("mypy", "strict") is settings["strict"]
    assert ini.getboolean("mypy", "ignore_missing_imports") is settings["ignore_missing_imports"]
