"""``dais autoscaler simulate``: the shipped traces replayed through the real policy on a virtual clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler.policy import PolicyConfig
from autoscaler.simulate import Trace, scaling_for, simulate

TRACES = Path(__file__).resolve().parents[2] / "benchmarks" / "traces"
CONFIG = PolicyConfig()


def replay(name: str) -> dict[str, object]:
    trace = Trace.read(TRACES / f"{name}.csv")
    return simulate(trace, scaling_for(trace, {}), CONFIG).summary()


def simulate_cli(*args: str) -> subprocess.CompletedProcess[str]:
    command = [sys.executable, "-m", "dais", "autoscaler", "simulate", *args]
    return subprocess.run(command, capture_output=True, text=True, timeout=120, check=False)


def test_the_diurnal_day_never_oscillates_and_costs_near_the_oracle() -> None:
    summary = replay("diurnal")
    assert summary["oscillations"] == 0
    assert 1.0 <= summary["cost_vs_oracle_ratio"] <= 1.15  # type: ignore[operator]


@pytest.mark.parametrize("name", ["spike", "diurnal", "idle-burst"])
def test_sustained_load_above_the_threshold_scales_up_within_a_minute_and_a_tick(name: str) -> None:
    summary = replay(name)
    assert summary["scale_up_reactions"]
    assert summary["scale_up_reaction_max_s"] <= CONFIG.up_interval_s + 15  # type: ignore[operator]


def test_idle_then_burst_goes_to_zero_and_wakes_on_the_first_request() -> None:
    trace = Trace.read(TRACES / "idle-burst.csv")
    result = simulate(trace, scaling_for(trace, {}), CONFIG)
    first_request = next(t for t, load, _ in trace.points if load > 0)
    to_zero = [c for c in result.changes if c.replicas == 0]
    woken = next(c for c in result.changes if c.previous == 0)
    assert to_zero[0].t_s == 15 * 60  # the timeout exactly, from the start of the idle trace
    assert woken.t_s == first_request
    assert woken.reason.startswith("woken")
    assert result.changes[-1].replicas == 0  # idle again at the end: back to zero


def test_the_cli_prints_decisions_and_a_summary_and_draws_the_plot(tmp_path: Path) -> None:
    out = tmp_path / "spike.png"
    done = subprocess.run(
        [
            sys.executable,
            "-m",
            "dais",
            "autoscaler",
            "simulate",
            "--trace",
            str(TRACES / "spike.csv"),
            "--plot",
            str(out),
        ],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr
    lines = done.stdout.strip().splitlines()
    assert "1 -> 2  hardware use %" in lines[0]
    assert json.loads(lines[-1])["oscillations"] == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_a_bad_trace_names_the_row_and_the_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,load\n0,10\n60,lots\n")
    done = simulate_cli("--trace", str(bad))
    assert done.returncode == 2
    assert "data row 2: needs numeric t_s and load" in done.stderr
