"""Pure status mapping for the local runtime: the model fetch and the replica processes → the same states and
messages as on Kubernetes, with what to do. No I/O; ``now`` is an argument."""

from __future__ import annotations

import re
import signal
from collections.abc import Sequence
from dataclasses import dataclass
from datetime import datetime

from controller.status import Observation, with_conditions
from core.domain.enums import EndpointState
from core.domain.state import MESSAGES

MIB = 2**20
# A log line reporting an error: a level name (plain or JSON), an exception's name, or a C library's "error:".
ERROR_LINE = re.compile(r'\b(ERROR|CRITICAL)\b|"level": "(error|critical)"|\w+Error\b|\berror:')


@dataclass(frozen=True, slots=True)
class FetchView:
    done: bool = False
    error: str | None = None
    arrived_bytes: int = 0
    total_bytes: int = 0


@dataclass(frozen=True, slots=True)
class ProcessView:
    """One replica's process."""

    digest: str
    port: int
    started_at: datetime
    ready: bool = False
    ready_at: datetime | None = None
    crashes: int = 0  # exits in a row without becoming Ready
    given_up: bool = False  # too many crashes, or no Ready before the deadline: not restarted
    exit_code: int | None = None  # of its last exit
    last_lines: str = ""  # of its output, at its last exit
    timed_out: bool = False


def observe_local(
    *,
    paused: bool,
    replicas: int,
    digest: str | None,
    fetch: FetchView | None,
    processes: Sequence[ProcessView],
    url: str,
    startup_deadline_seconds: float,
    now: datetime,
    build_error: str | None = None,
    waiting: str | None = None,  # why replicas wait for memory
) -> Observation:
    ready_total = sum(1 for p in processes if p.ready)
    if paused:
        return with_conditions(Observation(EndpointState.PAUSED, MESSAGES[EndpointState.PAUSED], ready_total, 0))
    if build_error is not None or digest is None:
        message = build_error or "the endpoint cannot run here"
        return with_conditions(Observation(EndpointState.FAILED, message, ready_total, replicas))
    if replicas == 0:
        state = EndpointState.SCALED_TO_ZERO
        return with_conditions(Observation(state, MESSAGES[state], ready_total, 0))
    current = [p for p in processes if p.digest == digest]
    old_ready = sum(1 for p in processes if p.ready and p.digest != digest)
    current_ready = sum(1 for p in current if p.ready)
    failure = _fetch_failure(fetch) or next((f for f in (_failure(p) for p in current) if f), None)
    if old_ready and current_ready < replicas:
        if failure:
            message = f"update failed, the previous version keeps serving: {failure}"
            return with_conditions(Observation(EndpointState.UPDATE_FAILED, message, ready_total, replicas))
        message = f"rolling out the new version: {current_ready} of {replicas} new replicas ready"
        return with_conditions(Observation(EndpointState.UPDATING, message, ready_total, replicas))
    if current_ready:
        running = Observation(EndpointState.RUNNING, MESSAGES[EndpointState.RUNNING], ready_total, replicas, url=url)
        return with_conditions(running)
    if failure:
        return with_conditions(Observation(EndpointState.FAILED, failure, 0, replicas))
    if fetch is not None and not fetch.done:
        return with_conditions(Observation(EndpointState.INITIALIZING, _downloading(fetch), 0, replicas))
    starting = [p for p in current if not p.given_up]
    if not starting:
        message = waiting or MESSAGES[EndpointState.PENDING]
        return with_conditions(Observation(EndpointState.PENDING, message, 0, replicas))
    waited = (now - min(p.started_at for p in starting)).total_seconds()
    crashed = max((p for p in starting if p.crashes), key=lambda p: p.crashes, default=None)
    message = "starting the engine and loading the model"
    if crashed is not None:
        message = f"restarting the engine after it exited ({_exit(crashed.exit_code)}; {crashed.crashes} in a row)"
    recheck = max(1.0, startup_deadline_seconds - waited)
    return with_conditions(Observation(EndpointState.INITIALIZING, message, 0, replicas, recheck_after=recheck))


def _fetch_failure(fetch: FetchView | None) -> str | None:
    if fetch is None or fetch.error is None:
        return None
    return f"downloading the model failed: {fetch.error}"


def _downloading(fetch: FetchView) -> str:
    if not fetch.total_bytes:
        return "downloading the model"
    share = min(100, round(100 * fetch.arrived_bytes / fetch.total_bytes))
    return (
        f"downloading the model: {share} % ({_mib(fetch.arrived_bytes)} of {_mib(fetch.total_bytes)} MiB); the "
        "first start waits for it, later ones find it in the cache"
    )


def _mib(size: int) -> str:
    return f"{size / MIB:.1f}" if size < 10 * MIB else f"{size / MIB:.0f}"


def _failure(process: ProcessView) -> str | None:
    if not process.given_up:
        return None
    if process.timed_out:
        return (
            "the engine did not become ready within the start-up deadline: check the endpoint's logs; for a very "
            "large model raise DAIS_CONTROLLER__STARTUP_DEADLINE_SECONDS"
        )
    lines = f": {_one_line(process.last_lines)}" if process.last_lines.strip() else ""
    advice = _advice(process)
    return f"the engine exited {process.crashes} times in a row ({_exit(process.exit_code)}){lines}; {advice}"


def _advice(process: ProcessView) -> str:
    text = process.last_lines.lower()
    if process.exit_code == -signal.SIGKILL or "out of memory" in text or "failed to allocate" in text:
        return (
            "it likely ran out of memory: choose a smaller quantization (a smaller GGUF file, modelPath) or "
            "hardware with more memory"
        )
    if "401" in text or "403" in text or "gated" in text:
        return "the Hub refused the model: check the token's access and the model's licence"
    return (
        "the line above says why (the replica's whole log is in DAIS_HOME/logs); fix the spec or the model and "
        "update the endpoint"
    )


def _exit(code: int | None) -> str:
    if code is None:
        return "no exit code"
    if code < 0:
        try:
            return f"killed by {signal.Signals(-code).name}"
        except ValueError:
            return f"killed by signal {-code}"
    return f"exit code {code}"


def _one_line(text: str) -> str:
    """The lines that say why, on one line: the errors among the last lines when there are any (a process
    logs its shutdown after the error that caused it), else the last few."""
    lines = [line.strip() for line in text.strip().splitlines() if line.strip()]
    errors = [line for line in lines if ERROR_LINE.search(line)]
    return " | ".join((errors or lines)[-3 if errors else -5 :])[:600]
