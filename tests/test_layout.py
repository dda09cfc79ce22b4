"""The import contract's forbidden list must name every api module that is not shared core."""

from __future__ import annotations

import tomllib
from pathlib import Path

ROOT = Path(__file__).resolve().parent.parent
SHARED = {"api.db", "api.domain", "api.kube", "api.settings"}


def test_contract_forbids_every_non_shared_api_module() -> None:
    config = tomllib.loads((ROOT / "pyproject.toml").read_text())
    contract = config["tool"]["importlinter"]["contracts"][0]
    forbidden = set(contract["forbidden_modules"])
    modules = {
        f"api.{p.stem}" if p.is_file() else f"api.{p.name}"
        for p in (ROOT / "api").iterdir()
        if (p.suffix == ".py" and p.stem != "__init__") or (p.is_dir() and (p / "__init__.py").exists())
    }
    assert modules - SHARED - forbidden == set(), "add these to the first import-linter contract"
