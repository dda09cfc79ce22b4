"""The local runtime: each replica is a child process (``dais engine``) on a loopback port of its own.

- The model is fetched once into the shared cache, ``DAIS_HOME/models/<repository>/<revision>``, by the code
  of ``dais model fetch`` (confined to that directory, resumable, verified, retried with backoff; the Hub token
  of the namespace or the endpoint's ``HF_TOKEN``), its progress shown in the endpoint's status. A complete
  fetch is recorded there (``hub.fetch.fetched``): every later start is a cache hit with no Hub request.
- A supervisor thread watches the children: a replica is Ready once its health route answers 200; one that
  exits is restarted with backoff (1, 2, 4 … s); after ``max_crashes`` exits in a row without becoming Ready,
  or no Ready before the start-up deadline, it is given up and the endpoint is ``failed`` with its last lines
  and what to do. Every change enqueues the endpoint, and the reconcile loop reports it.
- Each replica's output goes to ``DAIS_HOME/logs/<endpoint id>/<replica id>.log`` as timed lines with their
  stream, rotated at 10 MiB (3 kept), beside a record of its start, stop, restarts and exit code
  (``core.replica_logs``): the logs route reads them, also after the replica is gone.
- ``usage()`` measures each running replica's process from ``/proc`` (Linux): CPU cores in use since the last
  call, and resident memory, for the embedded metric history. No GPU figures: those need the driver's counters
  per process, which the local runtime does not read.
- Children get no ``DAIS_*`` setting (the database URL and the secret key stay here) and die with this process
  (``PR_SET_PDEATHSIG`` on Linux); ``close()`` stops them all. A restart adopts nothing: the reconcile loop
  starts what the specs ask.
"""

from __future__ import annotations

import contextlib
import ctypes
import importlib.util
import io
import logging
import math
import os
import shutil
import signal
import subprocess
import sys
import threading
import time
import uuid
from collections import deque
from collections.abc import Callable
from dataclasses import dataclass, field, replace
from datetime import datetime, timedelta
from pathlib import Path
from typing import IO

import httpx

from controller.desired import EndpointView
from controller.local_desired import MODEL_DIR, PORT, LocalRun, ReplicaView, local_run, memory_wait, plan_replicas
from controller.local_status import FetchView, ProcessView, observe_local
from controller.runtime import Notify
from controller.status import Observation, ReplicaSeen
from core import replica_logs
from core.domain.catalog import EngineCatalog, HardwareRow, load_engine_catalog
from core.domain.enums import ImageVariant
from core.domain.machine import memory_gb
from core.domain.timefmt import utc_now
from core.net import free_loopback_port
from hub.fetch import FetchError, fetch, fetched

log = logging.getLogger("dais.controller.local")

FETCH_RETRY_SECONDS = 60.0
KEPT_ENV = ("PATH", "HOME", "LANG", "LC_ALL", "TMPDIR", "PYTHONPATH", "VIRTUAL_ENV", "CUDA_VISIBLE_DEVICES")


@dataclass(frozen=True, slots=True)
class ReplicaUse:
    """Hardware use of an endpoint's replicas that could be measured, summed over them."""

    replicas: int
    cpu_cores: float
    memory_bytes: float


def process_use(pid: int) -> tuple[float, int] | None:
    """CPU seconds a process has used (user and system) and its resident bytes, from ``/proc``; None when it is
    gone or there is no ``/proc``."""
    try:
        stat = Path(f"/proc/{pid}/stat").read_bytes()
        statm = Path(f"/proc/{pid}/statm").read_bytes()
    except OSError:
        return None
    # The command name (2nd field) may hold spaces and parentheses: count the fields after its closing one.
    fields = stat[stat.rindex(b")") + 2 :].split()
    ticks = int(fields[11]) + int(fields[12])  # utime and stime, fields 14 and 15
    return ticks / _CLOCK_TICKS, int(statm.split()[1]) * _PAGE_BYTES


_CLOCK_TICKS = os.sysconf("SC_CLK_TCK") if hasattr(os, "sysconf") else 100
_PAGE_BYTES = os.sysconf("SC_PAGE_SIZE") if hasattr(os, "sysconf") else 4096


@dataclass
class _Fetch:
    key: str
    done: bool = False
    error: str | None = None
    failed_at: float = 0.0  # monotonic; a failed fetch is tried again after FETCH_RETRY_SECONDS
    arrived: int = 0
    total: int = 0
    waiting: set[str] = field(default_factory=set)  # endpoint ids to tell when it ends

    def view(self) -> FetchView:
        return FetchView(done=self.done, error=self.error, arrived_bytes=self.arrived, total_bytes=self.total)


@dataclass
class _Replica:
    id: str
    endpoint_id: str
    digest: str
    command: list[str]
    env: dict[str, str]
    health_route: str
    log_path: Path
    writer: replica_logs.LogWriter | None = None
    record: replica_logs.ReplicaRecord | None = None
    health_url: str = ""
    port: int = 0
    process: subprocess.Popen[bytes] | None = None
    started_at: datetime | None = None
    started: float = 0.0  # monotonic
    ready_at: datetime | None = None
    crashes: int = 0
    given_up: bool = False
    timed_out: bool = False
    exit_code: int | None = None
    last_lines: str = ""
    restart_at: float | None = None  # monotonic
    probe_failures: int = 0
    last_probe: float = 0.0
    tail: deque[str] = field(default_factory=lambda: deque(maxlen=40))

    @property
    def ready(self) -> bool:
        return self.ready_at is not None

    def seen(self) -> ReplicaSeen:
        """As the replica list shows it: first start, restarts since, and why it last exited."""
        if self.ready:
            state = "ready"
        elif self.given_up:
            state = "failed"
        elif self.process is None:
            state = "restarting"
        else:
            state = "starting"
        why = None
        if self.timed_out:
            why = "not ready before the start-up deadline"
        elif self.exit_code is not None:
            why = f"exited with code {self.exit_code}"
        record = self.record
        return ReplicaSeen(
            id=self.id,
            state=state,
            host=f"127.0.0.1:{self.port}",
            started_at=record.started_at if record is not None else self.started_at,
            restarts=record.restarts if record is not None else 0,
            last_termination=why,
        )

    def view(self) -> ProcessView:
        assert self.started_at is not None
        return ProcessView(
            digest=self.digest,
            port=self.port,
            started_at=self.started_at,
            ready=self.ready,
            ready_at=self.ready_at,
            crashes=self.crashes,
            given_up=self.given_up,
            exit_code=self.exit_code,
            last_lines=self.last_lines,
            timed_out=self.timed_out,
        )


@dataclass
class LocalRuntime:
    home: Path
    hub_url: str | None
    startup_deadline_seconds: float
    clock: Callable[[], datetime]
    notify: Notify
    engines: EngineCatalog = field(default_factory=lambda: load_engine_catalog(None))
    python: str = sys.executable
    max_crashes: int = 3
    check_seconds: float = 0.25
    memory_bytes: int | None = None  # what replicas may be promised in all; default: 90 % of this machine's memory
    log_retention: timedelta = timedelta(days=30)  # DAIS_LOGS__RETENTION_DAYS
    prune_seconds: float = 3600.0
    _lock: threading.RLock = field(default_factory=threading.RLock)
    _labels: dict[str, str] = field(default_factory=dict)  # endpoint id → namespace/name
    _needs: dict[str, int] = field(default_factory=dict)  # endpoint id → bytes one replica is promised
    _waiting: dict[str, str] = field(default_factory=dict)  # endpoint id → why its replicas wait for memory
    _runs: dict[str, LocalRun] = field(default_factory=dict)
    _replicas: dict[str, list[_Replica]] = field(default_factory=dict)
    _fetches: dict[str, _Fetch] = field(default_factory=dict)
    _http: httpx.Client = field(default_factory=lambda: httpx.Client(timeout=1.0))
    _cpu_seen: dict[int, tuple[float, float]] = field(default_factory=dict)  # pid → (monotonic, CPU seconds)

    @property
    def models(self) -> Path:
        return self.home / "models"

    @property
    def logs(self) -> Path:
        return self.home / "logs"

    # -- the runtime seam ---------------------------------------------------------------------------------------

    def converge(self, view: EndpointView, compute: HardwareRow) -> None:
        run = local_run(view, python=self.python, engines=self.engines, installed=installed_engines(self.engines))
        with self._lock:
            self._runs[view.id] = run
            replicas = self._replicas.setdefault(view.id, [])
            fetch = self._fetch(view, run) if view.replicas else None
            wanted = view.replicas if fetch is None or fetch.done else 0
            if fetch is not None and not fetch.done:
                # Nothing new starts before the model is here; what serves now keeps serving.
                wanted = sum(1 for r in replicas if r.digest == run.digest)
            views = [ReplicaView(r.id, r.digest, r.ready, r.given_up) for r in replicas]
            plan = plan_replicas(views, digest=run.digest, wanted=wanted)
            stopping = [r for r in replicas if r.id in plan.stop]
            self._replicas[view.id] = [r for r in replicas if r.id not in plan.stop]
            self._labels[view.id] = f"{view.namespace}/{view.name}"
            starts, self._waiting[view.id] = self._room(view.id, run, plan.start)
            for _ in range(starts):
                self._replicas[view.id].append(self._spawn(view.id, run))
        self._stopped(stopping)

    def _room(self, endpoint_id: str, run: LocalRun, count: int) -> tuple[int, str]:
        """How many of ``count`` new replicas the machine's memory holds beside what other endpoints were
        promised (a replica is promised its model's size on disk, a fifth more, and 512 MiB); and why not all."""
        if not count:
            return 0, ""
        model = self._model_dir(run)
        files = [model / name for name in run.include] if run.include else [p for p in model.rglob("*") if p.is_file()]
        need = self._needs[endpoint_id] = int(sum(p.stat().st_size for p in files if p.exists()) * 1.2) + 2**29
        promised: dict[str, int] = {}
        for other, replicas in self._replicas.items():
            held = sum(1 for r in replicas if not r.given_up) * self._needs.get(other, 0)
            if other != endpoint_id and held:
                promised[self._labels.get(other, other)] = held
        own = sum(1 for r in self._replicas.get(endpoint_id, []) if not r.given_up) * need
        if own:
            promised["its own replicas"] = own
        capacity = self.memory_bytes or int(memory_gb() * 2**30 * 0.9)
        fits, why = memory_wait(need=need, count=count, promised=promised, capacity=capacity)
        if why is not None:
            log.warning("%s: %s", self._labels.get(endpoint_id, endpoint_id), why)
        return fits, why or ""

    def _stopped(self, replicas: list[_Replica]) -> None:
        """Stops them; endpoints waiting for memory are looked at again."""
        _stop_all(replicas)
        if replicas:
            with self._lock:
                waiting = [endpoint_id for endpoint_id, why in self._waiting.items() if why]
            for endpoint_id in waiting:
                self.notify(endpoint_id)

    def observe(
        self, view: EndpointView, *, paused: bool, compute: HardwareRow | None, build_error: str | None, url: str
    ) -> Observation:
        with self._lock:
            waiting = self._waiting.get(view.id) or None
            run = self._runs.get(view.id)
            fetch = self._fetches.get(_fetch_key(run)) if run is not None else None
            replicas = [r for r in self._replicas.get(view.id, []) if r.started_at is not None]
            processes = [r.view() for r in replicas]
            seen = tuple(sorted((r.seen() for r in replicas), key=lambda r: r.id))
            ready = [r for r in replicas if r.ready]
        observation = observe_local(
            paused=paused,
            replicas=view.replicas,
            digest=run.digest if run is not None else None,
            fetch=fetch.view() if fetch is not None else None,
            processes=processes,
            url=url,
            startup_deadline_seconds=self.startup_deadline_seconds,
            now=self.clock(),
            build_error=build_error,
            waiting=waiting,
        )
        started = [(r.ready_at - r.started_at).total_seconds() for r in ready if r.ready_at and r.started_at]
        observation.addresses.extend(f"127.0.0.1:{r.port}" for r in ready)
        return replace(observation, startup_seconds=max(started) if started else None, replicas=seen)

    def upstream(self, view: EndpointView) -> str | None:
        with self._lock:
            ready = [r for r in self._replicas.get(view.id, []) if r.ready]
        return f"http://127.0.0.1:{ready[0].port}" if ready else None

    def remove(self, endpoint_id: str) -> bool:
        with self._lock:
            replicas = self._replicas.pop(endpoint_id, [])
            self._runs.pop(endpoint_id, None)
            for memo in (self._labels, self._needs, self._waiting):
                memo.pop(endpoint_id, None)
        self._stopped(replicas)
        shutil.rmtree(self.logs / endpoint_id, ignore_errors=True)
        return True

    def endpoint_ids(self) -> set[str]:
        with self._lock:
            return set(self._replicas)

    def usage(self) -> dict[str, ReplicaUse]:
        """Per endpoint id, its running replicas' CPU cores in use since the last call and their resident memory,
        summed; a replica seen for the first time has no rate yet and is not counted."""
        with self._lock:
            running = [
                (r.endpoint_id, r.process.pid)
                for replicas in self._replicas.values()
                for r in replicas
                if r.process is not None
            ]
        now = time.monotonic()
        seen: dict[int, tuple[float, float]] = {}
        found: dict[str, ReplicaUse] = {}
        for endpoint_id, pid in running:
            use = process_use(pid)
            if use is None:
                continue
            cpu_seconds, resident = use
            seen[pid] = (now, cpu_seconds)
            before = self._cpu_seen.get(pid)
            if before is None or now <= before[0]:
                continue
            cores = max(0.0, cpu_seconds - before[1]) / (now - before[0])
            summed = found.get(endpoint_id, ReplicaUse(0, 0.0, 0.0))
            found[endpoint_id] = ReplicaUse(
                summed.replicas + 1, summed.cpu_cores + cores, summed.memory_bytes + resident
            )
        self._cpu_seen = seen
        return found

    # -- the supervisor -----------------------------------------------------------------------------------------

    def run(self, stop: threading.Event) -> None:
        """Watches the children until ``stop``, then stops them all; prunes the replicas' logs past their
        retention now and then."""
        pruned_at = -math.inf
        try:
            while not stop.wait(self.check_seconds):
                for endpoint_id in self._check():
                    self.notify(endpoint_id)
                if time.monotonic() - pruned_at >= self.prune_seconds:
                    pruned_at = time.monotonic()
                    self._prune_logs()
        finally:
            self.close()

    def close(self) -> None:
        with self._lock:
            everything = [r for replicas in self._replicas.values() for r in replicas]
            self._replicas.clear()
        _stop_all(everything)
        self._http.close()

    def _prune_logs(self) -> None:
        try:
            removed = replica_logs.prune(self.logs, before=self.clock() - self.log_retention)
        except OSError as exc:
            log.warning("could not prune replica logs under %s: %s", self.logs, exc)
            return
        if removed:
            log.info("pruned %d replica log files older than %s", removed, self.log_retention)

    def _check(self) -> set[str]:
        """One look at every replica; the endpoints whose replicas changed."""
        changed = set()
        now = time.monotonic()
        with self._lock:
            replicas = [r for rs in self._replicas.values() for r in rs]
        for replica in replicas:
            if self._check_one(replica, now):
                changed.add(replica.endpoint_id)
        return changed

    def _check_one(self, replica: _Replica, now: float) -> bool:
        process = replica.process
        if replica.given_up:
            return False
        if process is None:
            if replica.restart_at is not None and now >= replica.restart_at:
                with self._lock:
                    if replica in self._replicas.get(replica.endpoint_id, []):
                        self._start(replica)
                return True
            return False
        code = process.poll()
        if code is not None:
            self._exited(replica, code, now)
            return True
        if not replica.ready:
            if self._probe(replica):
                replica.ready_at, replica.crashes, replica.probe_failures = self.clock(), 0, 0
                log.info("replica %s of %s is ready on port %d", replica.id, replica.endpoint_id, replica.port)
                return True
            if now - replica.started > self.startup_deadline_seconds:
                replica.given_up = replica.timed_out = True
                _stop_all([replica])
                return True
            return False
        if now - replica.last_probe >= 5:  # a Ready replica that stops answering is taken out of rotation
            replica.last_probe = now
            replica.probe_failures = 0 if self._probe(replica) else replica.probe_failures + 1
            if replica.probe_failures >= 3:
                log.warning("replica %s of %s stopped answering its health route", replica.id, replica.endpoint_id)
                replica.ready_at, replica.started = None, now
                return True
        return False

    def _probe(self, replica: _Replica) -> bool:
        try:
            return self._http.get(replica.health_url).status_code == 200
        except httpx.HTTPError:
            return False

    def _exited(self, replica: _Replica, code: int, now: float) -> None:
        replica.crashes = 1 if replica.ready else replica.crashes + 1
        replica.exit_code, replica.process, replica.ready_at = code, None, None
        replica.last_lines = "\n".join(replica.tail)
        if replica.record is not None:
            replica.record = replace(replica.record, exit_code=code)
            replica_logs.write_record(replica.log_path.parent, replica.record)
        if replica.crashes >= self.max_crashes:
            replica.given_up = True
            _stopped_at(replica, self.clock())
            log.error(
                "replica %s of %s gave up after %d exits in a row", replica.id, replica.endpoint_id, replica.crashes
            )
            return
        delay = min(30.0, 2.0 ** (replica.crashes - 1))
        replica.restart_at = now + delay
        log.warning("replica %s of %s exited (%d): restarting in %.0f s", replica.id, replica.endpoint_id, code, delay)

    def _spawn(self, endpoint_id: str, run: LocalRun) -> _Replica:
        replica_id = uuid.uuid4().hex[:8]
        model_dir = self._model_dir(run)
        replica = _Replica(
            id=replica_id,
            endpoint_id=endpoint_id,
            digest=run.digest,
            command=[part.replace(MODEL_DIR, str(model_dir)) for part in run.command],
            env=_child_env(run.env),
            health_route=run.health_route,
            log_path=self.logs / endpoint_id / f"{replica_id}.log",
        )
        self._start(replica)
        return replica

    def _start(self, replica: _Replica) -> None:
        replica.port = free_loopback_port()
        replica.health_url = f"http://127.0.0.1:{replica.port}/{replica.health_route.lstrip('/')}"
        command = [part.replace(PORT, str(replica.port)) for part in replica.command]
        if replica.writer is None:
            replica.writer = replica_logs.LogWriter(replica.log_path, clock=self.clock)
        replica.process = subprocess.Popen(
            command,
            env=replica.env,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            start_new_session=True,  # a Ctrl-C at the terminal reaches dais serve, which stops its children
            preexec_fn=_die_with_parent,
        )
        replica.started_at, replica.started, replica.restart_at = self.clock(), time.monotonic(), None
        replica.record = (
            replica_logs.ReplicaRecord(replica.id, replica.started_at)
            if replica.record is None
            else replace(replica.record, restarts=replica.record.restarts + 1)
        )
        replica_logs.write_record(replica.log_path.parent, replica.record)
        replica.tail.clear()
        for name, stream in (("stdout", replica.process.stdout), ("stderr", replica.process.stderr)):
            assert stream is not None
            threading.Thread(
                target=_pump, args=(stream, name, replica), name=f"log-{replica.id}-{name}", daemon=True
            ).start()
        log.info("replica %s of %s starting on port %d", replica.id, replica.endpoint_id, replica.port)

    # -- the model cache ----------------------------------------------------------------------------------------

    def _model_dir(self, run: LocalRun) -> Path:
        target = (self.models / run.model_key).resolve()
        if not target.is_relative_to(self.models.resolve()):
            raise ValueError(f"model {run.model_key} would leave the model cache")
        return target

    def _fetch(self, view: EndpointView, run: LocalRun) -> _Fetch:
        """The model's fetch: done from the cache marker, running, or started now."""
        key = _fetch_key(run)
        found = self._fetches.get(key)
        if found is not None and (
            found.done or found.error is None or time.monotonic() - found.failed_at < FETCH_RETRY_SECONDS
        ):
            found.waiting.add(view.id)
            return found
        dest = self._model_dir(run)
        if fetched(dest, list(run.include) or None):
            found = self._fetches[key] = _Fetch(key, done=True)
            return found
        found = self._fetches[key] = _Fetch(key, waiting={view.id})
        token = view.secrets.get("HF_TOKEN") or view.hub_token
        threading.Thread(
            target=self._download, args=(found, run, dest, token), name=f"fetch-{run.repository}", daemon=True
        ).start()
        return found

    def _download(self, state: _Fetch, run: LocalRun, dest: Path, token: str | None) -> None:
        def progress(arrived: int, total: int) -> None:
            state.arrived, state.total = arrived, total
            now = time.monotonic()
            if now - last[0] >= 1:  # the status message shows progress, once a second at most
                last[0] = now
                for endpoint_id in list(state.waiting):
                    self.notify(endpoint_id)

        last = [0.0]
        try:
            fetch(
                repository=run.repository,
                revision=run.revision,
                dest=dest,
                include=list(run.include) or None,
                token=token,
                endpoint=self.hub_url,
                out=_LogLines(log),
                progress=progress,
            )
            state.done = True
        except FetchError as exc:
            state.error, state.failed_at = str(exc), time.monotonic()
            log.error("fetching %s failed: %s", run.model_key, exc)
        except Exception as exc:  # a bug must not hang the endpoint in 'downloading'
            state.error, state.failed_at = f"unexpected error: {exc}", time.monotonic()
            log.exception("fetching %s failed", run.model_key)
        for endpoint_id in list(state.waiting):
            self.notify(endpoint_id)


def installed_engines(engines: EngineCatalog) -> frozenset[ImageVariant]:
    """The catalog's engines whose local command this machine has: the executable on PATH, or for
    ``python -m module`` the module importable by this Python (which then runs it)."""
    found = set()
    for variant, recipe in engines.engines.items():
        if recipe.local is None:
            continue
        command = recipe.local.command
        if command[0].startswith("python") and command[1:2] == ["-m"]:
            if importlib.util.find_spec(command[2].split(".")[0]) is not None:
                found.add(variant)
        elif shutil.which(command[0]):
            found.add(variant)
    return frozenset(found)


def _fetch_key(run: LocalRun | None) -> str:
    return f"{run.model_key}:{','.join(run.include)}" if run is not None else ""


def _child_env(spec_env: dict[str, str]) -> dict[str, str]:
    """The engine's environment: the basics of ours, its log format, and the spec's env and secrets; none of the
    server's other ``DAIS_*`` settings (the database URL and the secret key stay here)."""
    env = {k: v for k, v in os.environ.items() if k in KEPT_ENV or k.startswith(("HF_", "DAIS_LOG_"))}
    return {**env, **spec_env}


def _die_with_parent() -> None:
    """Runs in the child before exec: the kernel sends it SIGTERM when dais serve dies, however it dies."""
    if sys.platform == "linux":
        ctypes.CDLL("libc.so.6", use_errno=True).prctl(1, signal.SIGTERM)  # PR_SET_PDEATHSIG


def _pump(stream: IO[bytes], name: str, replica: _Replica) -> None:
    """One of the child's outputs to its log, keeping the last lines for the status message."""
    try:
        for raw in iter(stream.readline, b""):
            line = raw.decode("utf-8", "replace").rstrip()
            replica.tail.append(line)
            if replica.writer is not None:
                replica.writer.write(name, line)
    except (OSError, ValueError) as exc:  # the log directory was removed with the endpoint
        log.debug("replica %s log ended: %s", replica.id, exc)
    finally:
        stream.close()


def _stop_all(replicas: list[_Replica], *, grace: float = 10.0) -> None:
    """SIGTERM to each, then SIGKILL to any still running after ``grace`` seconds."""
    running = [r.process for r in replicas if r.process is not None and r.process.poll() is None]
    for replica in replicas:
        replica.restart_at = None
    for process in running:
        process.terminate()
    deadline = time.monotonic() + grace
    for process in running:
        try:
            process.wait(timeout=max(0.1, deadline - time.monotonic()))
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()
    for replica in replicas:
        replica.process, replica.ready_at = None, None
        _stopped_at(replica, utc_now())


def _stopped_at(replica: _Replica, when: datetime) -> None:
    """The replica is gone for good: its record says when, and its log is closed (its files stay)."""
    if replica.record is not None and replica.record.stopped_at is None:
        replica.record = replace(replica.record, stopped_at=when)
        with contextlib.suppress(OSError):  # the endpoint's log directory may be gone with it
            replica_logs.write_record(replica.log_path.parent, replica.record)
    if replica.writer is not None:
        replica.writer.close()


class _LogLines(io.StringIO):
    """A text stream for fetch's progress lines, into this process's log."""

    def __init__(self, logger: logging.Logger) -> None:
        super().__init__()
        self.logger = logger

    def write(self, text: str) -> int:
        for line in text.splitlines():
            if line.strip():
                self.logger.info("%s", line.strip())
        return len(text)
