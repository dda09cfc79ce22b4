"""Model fetch throughput against curl, and the cost of a fully cached start.

Run from the repository root: ``.venv/bin/python benchmarks/fetch.py``.

It writes 20 files of 100 MiB (about 2 GB) to a temporary directory, serves them as one model from the
local Hub of tests/fixtures/hub.py (LFS files behind a redirect to its CDN port, as on the real Hub), then:

1. the anchor: ``curl --parallel`` (8 at a time, the same as fetch's default workers) downloads every file
   through the same resolve URLs, redirects followed;
2. ``dais model fetch`` (a real process, as the init container runs it) downloads the same revision into an
   empty directory, checking every file's sha256;
   (1 and 2 alternate for ``--rounds`` rounds, each after a ``sync``; the medians are reported);
3. ``dais model fetch`` runs again on the filled directory: the fully cached start.

Stdout: one JSON object; progress on stderr. Everything is removed on exit.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

REPO = Path(__file__).resolve().parent.parent
sys.path.insert(0, str(REPO))

from tests.fixtures.hub import HubServer  # noqa: E402

MIB = 2**20
STARTED = time.monotonic()
GOAL_RATIO = 0.8
GOAL_CACHED_S = 1.0


def log(message: str) -> None:
    print(f"[{time.monotonic() - STARTED:6.1f}s] {message}", file=sys.stderr, flush=True)


def make_files(directory: Path, count: int, size_mib: int) -> dict[str, Path]:
    block = os.urandom(MIB)
    files = {}
    for index in range(count):
        name = f"model-{index + 1:05d}-of-{count:05d}.safetensors"
        path = directory / name
        with path.open("wb") as handle:
            for chunk in range(size_mib):
                handle.write(index.to_bytes(4, "little") + chunk.to_bytes(4, "little") + block[8:])
        files[name] = path
    return files


def timed(args: list[str], env: dict[str, str] | None = None) -> float:
    os.sync()  # start each run without the previous run's 2 GB still being written back
    began = time.perf_counter()
    result = subprocess.run(args, capture_output=True, text=True, env=env, check=False)
    elapsed = time.perf_counter() - began
    if result.returncode != 0:
        raise RuntimeError(f"{args[0]} failed ({result.returncode}): {result.stderr[-2000:]}")
    return elapsed


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--files", type=int, default=20)
    parser.add_argument("--size-mib", type=int, default=100)
    parser.add_argument("--workers", type=int, default=8)
    parser.add_argument("--rounds", type=int, default=3, help="alternating curl/fetch runs; medians are reported")
    args = parser.parse_args()
    if shutil.which("curl") is None:
        raise SystemExit("curl is needed for the anchor: apt-get install curl")

    work = Path(tempfile.mkdtemp(prefix="dais-bench-fetch-"))
    try:
        log(f"writing {args.files} files of {args.size_mib} MiB")
        (work / "source").mkdir()
        files = make_files(work / "source", args.files, args.size_mib)
        total = sum(p.stat().st_size for p in files.values())
        with HubServer() as hub:
            sha = hub.add_model("bench/model", files, pipeline_tag="text-generation")
            log(f"serving {total / MIB:.0f} MiB at {hub.url}")

            env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN",)}
            env["HF_HOME"] = str(work / "hf-home")
            env["HF_HUB_DISABLE_TELEMETRY"] = "1"
            fetch = [sys.executable, "-m", "dais", "model", "fetch", "--repo", "bench/model", "--revision", sha]
            fetch += ["--dest", str(work / "dest"), "--endpoint", hub.url, "--workers", str(args.workers)]
            curl_runs, fetch_runs = [], []
            for round_ in range(args.rounds):  # alternated, so both see the same machine
                curl_dir = work / "curl"
                shutil.rmtree(curl_dir, ignore_errors=True)
                curl_dir.mkdir()
                command = ["curl", "--parallel", "--parallel-max", str(args.workers), "-sS", "-L", "--fail"]
                for name in files:
                    command += ["-o", str(curl_dir / name), f"{hub.url}/bench/model/resolve/{sha}/{name}"]
                curl_runs.append(timed(command))
                assert sum(p.stat().st_size for p in curl_dir.iterdir()) == total
                shutil.rmtree(curl_dir)
                shutil.rmtree(work / "dest", ignore_errors=True)
                fetch_runs.append(timed(fetch, env))
                assert all((work / "dest" / n).stat().st_size == p.stat().st_size for n, p in files.items())
                log(f"round {round_ + 1}: curl {curl_runs[-1]:.2f}s, dais model fetch {fetch_runs[-1]:.2f}s")
            curl_s, fetch_s = statistics.median(curl_runs), statistics.median(fetch_runs)

            hub.clear_requests()
            cached_s = timed(fetch, env)
            cached_downloads = hub.downloads()
            log(f"cached start: {cached_s:.2f}s, {cached_downloads} downloads")
    finally:
        shutil.rmtree(work, ignore_errors=True)

    curl_mib_s = total / MIB / curl_s
    fetch_mib_s = total / MIB / fetch_s
    figures = {
        "files": args.files,
        "total_mib": round(total / MIB),
        "parallel_downloads": args.workers,
        "rounds": args.rounds,
        "curl_s": round(curl_s, 2),
        "curl_mib_per_s": round(curl_mib_s, 1),
        "fetch_s": round(fetch_s, 2),
        "fetch_mib_per_s": round(fetch_mib_s, 1),
        "fetch_vs_curl_ratio": round(fetch_mib_s / curl_mib_s, 2),
        "cached_start_s": round(cached_s, 2),
        "cached_start_downloads": cached_downloads,
        "goals_met": {
            "ratio_ge_0_8": fetch_mib_s / curl_mib_s >= GOAL_RATIO,
            "cached_start_le_1_s": cached_s <= GOAL_CACHED_S and cached_downloads == 0,
        },
    }
    print(json.dumps(figures, indent=2))
    return 0


if __name__ == "__main__":
    sys.exit(main())
