"""The import contracts (pyproject.toml, `lint-imports`) stay honest.

A contract that names a module that does not exist checks nothing, so every name must resolve. And a contract
that cannot fail is decoration, so each one is run on a copy of the tree with a deliberate violation added and
must then report itself broken.
"""

from __future__ import annotations

import importlib.util
import os
import re
import shutil
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent
CONFIG = tomllib.loads((ROOT / "pyproject.toml").read_text())["tool"]["importlinter"]
CONTRACTS = {contract["id"]: contract for contract in CONFIG["contracts"]}
ROOTS = CONFIG["root_packages"]

# One violation per contract: (file to append to, line appended). Each must break exactly that contract.
VIOLATIONS = {
    "layers": [
        ("gateway/routing.py", "import controller.queue"),  # a component importing another
        ("core/settings.py", "import api.errors"),  # the kernel importing a component
        ("hub/resolve.py", "import dais.cli"),  # a library importing the composition root
    ],
    "pure": [
        ("controller/plan.py", "import sqlalchemy"),
        ("autoscaler/policy.py", "import asyncio"),
        ("controller/status.py", "import core.db.session"),  # indirectly: sqlalchemy through core.db
    ],
    "repositories": [("api/hardware/routes.py", "from api.endpoint import repository")],
}


def _modules_named(contract: dict[str, object]) -> list[str]:
    names: list[str] = []
    for key in ("source_modules", "forbidden_modules", "modules", "protected_modules", "allowed_importers"):
        names.extend(contract.get(key, []))  # type: ignore[arg-type]
    for layer in contract.get("layers", []):  # type: ignore[attr-defined]
        names.extend(part.strip() for part in re.split(r"[|:]", layer))
    return names


def _internal_exists(name: str) -> bool:
    if "*" in name:
        pattern = ROOT / name.replace(".", "/")
        return any(ROOT.glob(str(pattern.relative_to(ROOT)) + ".py")) or any(
            ROOT.glob(str(pattern.relative_to(ROOT)) + "/__init__.py")
        )
    path = ROOT / name.replace(".", "/")
    return path.with_suffix(".py").is_file() or (path / "__init__.py").is_file()


@pytest.mark.parametrize("contract_id", sorted(CONTRACTS))
def test_every_module_a_contract_names_exists(contract_id: str) -> None:
    missing = []
    for name in _modules_named(CONTRACTS[contract_id]):
        if name.split(".")[0] in ROOTS:
            if not _internal_exists(name):
                missing.append(name)
        elif importlib.util.find_spec(name) is None:
            missing.append(name)
    assert not missing, f"contract {contract_id!r} names modules that do not exist: {missing}"


def test_no_contract_allows_indirect_imports() -> None:
    assert not [c["id"] for c in CONFIG["contracts"] if c.get("allow_indirect_imports")]


def test_every_contract_has_a_violation_below() -> None:
    assert set(VIOLATIONS) == set(CONTRACTS)


def _lint(tree: Path, contract_id: str) -> subprocess.CompletedProcess[str]:
    lint = Path(sys.executable).with_name("lint-imports")
    env = {**os.environ, "PYTHONPATH": str(tree)}
    return subprocess.run(
        [str(lint), "--no-cache", "--no-logo", "--config", str(tree / "pyproject.toml"), "--contract", contract_id],
        cwd=tree,
        env=env,
        capture_output=True,
        text=True,
        timeout=300,
    )


@pytest.fixture(scope="module")
def tree(tmp_path_factory: pytest.TempPathFactory) -> Path:
    copy = tmp_path_factory.mktemp("tree")
    for package in ROOTS:
        shutil.copytree(ROOT / package, copy / package, ignore=shutil.ignore_patterns("__pycache__", "*.yaml"))
    shutil.copy2(ROOT / "pyproject.toml", copy / "pyproject.toml")
    return copy


@pytest.mark.parametrize(
    ("contract_id", "path", "line"),
    [(contract_id, path, line) for contract_id, cases in VIOLATIONS.items() for path, line in cases],
)
def test_each_contract_fails_on_a_deliberate_violation(tree: Path, contract_id: str, path: str, line: str) -> None:
    clean = _lint(tree, contract_id)
    assert clean.returncode == 0, clean.stdout + clean.stderr
    target = tree / path
    original = target.read_text()
    try:
        target.write_text(original + f"\n{line}  # deliberate violation\n")
        broken = _lint(tree, contract_id)
    finally:
        target.write_text(original)
    assert broken.returncode != 0, broken.stdout
    assert "BROKEN" in broken.stdout, broken.stdout
