"""The Dockerfile's recipe, without a Docker engine: build the wheel from exactly what its COPY lines bring into
the build stage, and run that wheel's `dais` (help, every component's entry, a migration) from a clean
directory. A module missing from the COPY list, or a data file missing from the package, fails here."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import zipfile
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
DOCKERFILE = REPO / "Dockerfile"


def build_stage_copies() -> list[str]:
    """Source paths of the COPY lines of the first (build) stage, without --from."""
    text = DOCKERFILE.read_text()
    first_stage = text.split("\nFROM ", 2)[1]
    sources: list[str] = []
    for line in first_stage.splitlines():
        match = re.match(r"^COPY\s+(?!--from)(.+)$", line.strip())
        if match:
            *paths, _dest = match.group(1).split()
            sources.extend(paths)
    return sources


@pytest.fixture(scope="module")
def wheel(tmp_path_factory: pytest.TempPathFactory) -> Path:
    context = tmp_path_factory.mktemp("context")
    for source in build_stage_copies():
        origin = REPO / source
        if origin.is_dir():
            shutil.copytree(origin, context / source, ignore=shutil.ignore_patterns("__pycache__"))
        else:
            shutil.copy2(origin, context / source)
    out = tmp_path_factory.mktemp("wheel")
    subprocess.run(
        [sys.executable, "-m", "pip", "wheel", "--no-deps", "-q", "-w", str(out), str(context)],
        check=True,
        timeout=300,
    )
    (built,) = out.glob("dais-*.whl")
    return built


def test_the_build_stage_copies_every_package_and_data_file(wheel: Path) -> None:
    names = set(zipfile.ZipFile(wheel).namelist())
    for package in ("core", "hub", "api", "controller", "autoscaler", "gateway", "dais", "migrations"):
        assert f"{package}/__init__.py" in names, package
    assert {
        "core/domain/hardware.yaml",
        "core/domain/engines.yaml",
        "migrations/env.py",
        "migrations/script.py.mako",
    } <= names
    assert any(n.startswith("migrations/versions/") for n in names)
    assert not any(n.startswith(("tests/", "benchmarks/")) for n in names)


def test_the_packaged_cli_starts_every_component_and_migrates(wheel: Path, tmp_path: Path) -> None:
    unpacked = tmp_path / "site"
    zipfile.ZipFile(wheel).extractall(unpacked)
    # The wheel's code first; the dependencies from this environment (the image installs the same pins).
    env = {**os.environ, "PYTHONPATH": str(unpacked), "DAIS_HOME": str(tmp_path / "home")}
    env.pop("DAIS_DATABASE_URL", None)

    def dais(*args: str) -> subprocess.CompletedProcess[str]:
        code = "import sys; from dais.cli import main; sys.exit(main())"
        return subprocess.run(
            [sys.executable, "-c", code, *args], cwd=tmp_path, env=env, capture_output=True, text=True, timeout=120
        )

    helped = dais("--help")
    assert helped.returncode == 0, helped.stderr
    for command in ("api", "controller", "autoscaler", "gateway", "db", "model"):
        assert command in helped.stdout
    migrated = dais("db", "upgrade")
    assert migrated.returncode == 0, migrated.stderr
    assert (tmp_path / "home" / "dais.db").exists()
    located = subprocess.run(
        [
            sys.executable,
            "-c",
            "import gateway.app, controller.app, autoscaler.app, api.main; print(api.main.__file__)",
        ],
        cwd=tmp_path,
        env=env,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert located.returncode == 0, located.stderr
    assert located.stdout.strip().startswith(str(unpacked))
