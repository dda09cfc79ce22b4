"""``dais autoscaler simulate``: the shipped traces replayed through the real policy on a virtual clock."""

from __future__ import annotations

import json
import subprocess
import sys
from pathlib import Path

import pytest

from autoscaler.policy import PolicyConfig
from autoscaler.simulate import Trace, hpa_like, scaling_for, simulate

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


@pytest.mark.parametrize(("name", "settled"), [("steady-150", 2), ("steady-250", 4), ("steady-370", 5)])
def test_a_steady_load_settles_at_the_count_it_needs_and_stays(name: str, settled: int) -> None:
    trace = Trace.read(TRACES / f"{name}.csv")
    result = simulate(trace, scaling_for(trace, {}), CONFIG)
    assert result.changes[-1].replicas == settled  # ceil(load / 80 %)
    assert len(result.changes) == 1  # in one step: the arrivals against the completions show the work offered
    assert result.oscillations == 0


@pytest.mark.parametrize("name", sorted(path.stem for path in TRACES.glob("*.csv")))
def test_no_trace_serves_worse_than_the_hpa_like_baseline(name: str) -> None:
    trace = Trace.read(TRACES / f"{name}.csv")
    dais = simulate(trace, scaling_for(trace, {}), CONFIG).summary()
    hpa = simulate(trace, scaling_for(trace, {}), CONFIG, policy=hpa_like).summary()
    for figure in ("overloaded_s", "above_threshold_s", "oscillations"):
        assert dais[figure] <= hpa[figure], figure  # type: ignore[operator]


def test_a_spike_is_overloaded_no_longer_than_a_start_up_an_evaluation_and_a_tick() -> None:
    summary = replay("spike")
    assert summary["overloaded_s"] <= 90 + CONFIG.up_interval_s + 15  # type: ignore[operator]
    assert summary["oscillations"] == 0


def test_the_hpa_like_baseline_climbs_the_spike_more_slowly() -> None:
    trace = Trace.read(TRACES / "spike.csv")
    dais = simulate(trace, scaling_for(trace, {}), CONFIG)
    hpa = simulate(trace, scaling_for(trace, {}), CONFIG, policy=hpa_like)
    assert dais.overloaded_s < hpa.overloaded_s
    assert max(change.replicas - change.previous for change in hpa.changes) < 6  # HPA cannot see past 100 %


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
    # The spike is climbed in one decision: one replica at 100 % cannot show the work waiting, requests can.
    assert "1 -> 7  hardware use 100 % (saturated); 5.0 requests in flight at ~0.8" in lines[0]
    assert json.loads(lines[-1])["oscillations"] == 0
    assert out.read_bytes().startswith(b"\x89PNG")


def test_a_bad_trace_names_the_row_and_the_format(tmp_path: Path) -> None:
    bad = tmp_path / "bad.csv"
    bad.write_text("t_s,load\n0,10\n60,lots\n")
    done = simulate_cli("--trace", str(bad))
    assert done.returncode == 2
    assert "data row 2: needs numeric t_s and load" in done.stderr
