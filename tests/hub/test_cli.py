"""`dais recommend` on the local Hub, and the CLI's token discovery (--token, HF_TOKEN, the token cache)."""

from __future__ import annotations

import json
import os
import subprocess
import sys
from pathlib import Path

from tests.fixtures.hub import HubServer
from tests.hub.test_resolution import header_only_safetensors


def recommend(hub: HubServer, tmp_path: Path, *args: str, **env: str) -> subprocess.CompletedProcess[str]:
    clean = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "HF_TOKEN_PATH", "DAIS_HUB__URL")}
    clean["HF_HOME"] = str(tmp_path / "hf-home")
    clean["DAIS_CONTROLLER__RUNTIME"] = "none"  # the shipped catalog (on the local runtime it is this machine)
    return subprocess.run(
        [sys.executable, "-m", "dais", "recommend", *args, "--endpoint", hub.url],
        capture_output=True,
        text=True,
        env={**clean, **env},
        timeout=60,
    )


def test_recommend_lists_fitting_rows_cheapest_first(hub: HubServer, tmp_path: Path) -> None:
    sha = hub.add_model("org/big", {"model.safetensors": header_only_safetensors(30_000_000_000)})
    result = recommend(hub, tmp_path, "org/big", "--vendor", "aws", "--json")
    assert result.returncode == 0, result.stderr
    found = json.loads(result.stdout)
    assert found["revision"] == sha
    assert found["items"][0]["id"] == "aws-us-east-1-nvidia-a100-x1"
    text = recommend(hub, tmp_path, "org/big@main", "--vendor", "aws")
    assert text.returncode == 0, text.stderr
    first = text.stdout.splitlines()[1]
    assert "aws/us-east-1  gpu/nvidia-a100/x1" in first


def test_the_token_comes_from_the_flag_then_hf_token_then_the_token_cache(hub: HubServer, tmp_path: Path) -> None:
    hub.add_model(
        "org/private", {"model.safetensors": header_only_safetensors(1000)}, private=True, tokens={"hf_mine_1"}
    )
    assert recommend(hub, tmp_path, "org/private").returncode == 2  # no token anywhere: not found
    assert recommend(hub, tmp_path, "org/private", "--token", "hf_mine_1").returncode == 0
    assert recommend(hub, tmp_path, "org/private", HF_TOKEN="hf_mine_1").returncode == 0
    cache = tmp_path / "hf-home" / "token"
    cache.parent.mkdir(parents=True)
    cache.write_text("hf_mine_1")
    assert recommend(hub, tmp_path, "org/private").returncode == 0
    elsewhere = tmp_path / "elsewhere"
    elsewhere.write_text("hf_mine_1")
    cache.unlink()
    assert recommend(hub, tmp_path, "org/private", HF_TOKEN_PATH=str(elsewhere)).returncode == 0
    refused = recommend(hub, tmp_path, "org/private", "--token", "hf_wrong")
    assert refused.returncode == 2
    assert "model org/private not found on the Hub" in refused.stderr
