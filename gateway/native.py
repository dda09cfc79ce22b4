"""The gateway's hot path compiled to C by mypyc, when a build for this exact source exists.

Relaying one request is a few hundred Python operations: parse, route, forward, relay, count. Compiled by mypyc
(mypy's own compiler: the code is already fully typed and checked with ``mypy --strict``), the same modules
take a fifth to a third less CPU per request (``benchmarks/gateway.py`` prints which one it measured).

A build lives outside the tree, in ``~/.cache/dais/native/<key>`` (``DAIS_NATIVE_CACHE`` moves it), where the
key hashes the sources of the ``gateway`` and ``core`` packages and the interpreter's version. An edited
file therefore never runs as a stale build: until ``dais gateway-build`` builds again (``make`` does, in about a
minute), the gateway runs as plain Python, with the same behaviour. ``DAIS_GATEWAY_NATIVE=0`` turns
the build off.
"""

from __future__ import annotations

import hashlib
import os
import shutil
import sys
import sysconfig
import tempfile
from pathlib import Path

# The modules on the path of every request. The others (routing table, token checks, cold starts, the app's
# wiring) run per change or per cache miss, and stay plain Python.
MODULES = ("server", "upstream", "proxy", "usage", "activity", "metrics")
GROUP = "dais_gateway"  # the name of the shared library the compiled modules load (GROUP__mypyc)

ROOT = Path(__file__).resolve().parent.parent  # the directory holding the gateway and core packages
PACKAGES = ("gateway", "core")  # what the compiled modules import of ours, so what a build depends on
KEPT = 8  # builds kept in the cache, the newest
# mypy's settings for the build: pyproject.toml's [tool.mypy] (a test keeps them equal), written beside a copy of
# the sources because an installed package has no pyproject.toml, and its site-packages cannot be mypy's root:
# modules there (typing_extensions.py, say) would shadow the library stubs.
MYPY_INI = "[mypy]\nplugins = pydantic.mypy\nignore_missing_imports = True\nstrict = True\n"


def cache_root() -> Path:
    configured = os.environ.get("DAIS_NATIVE_CACHE")
    if configured:
        return Path(configured)
    base = os.environ.get("XDG_CACHE_HOME") or str(Path.home() / ".cache")
    return Path(base) / "dais" / "native"


def key(root: Path = ROOT) -> str:
    """What a build depends on: the sources mypyc reads and the interpreter it compiles for. (Not mypy's version:
    a build carries its own runtime, and an image ships builds without mypy.)"""
    digest = hashlib.sha256()
    digest.update(f"{sys.version}|{sysconfig.get_platform()}".encode())
    for package in PACKAGES:
        for path in sorted((root / package).rglob("*.py")):
            digest.update(str(path.relative_to(root)).encode())
            digest.update(path.read_bytes())
    return digest.hexdigest()[:20]


def load(package_path: list[str]) -> bool:
    """Puts a build for the present sources ahead of them on the ``gateway`` package's path, when there is one.
    Called by ``gateway/__init__.py`` before any of its modules is imported."""
    if os.environ.get("DAIS_GATEWAY_NATIVE", "1") == "0":
        return False
    built = cache_root() / key()
    if not (built / "gateway").is_dir():
        return False
    package_path.insert(0, str(built / "gateway"))
    if str(built) not in sys.path:
        sys.path.append(str(built))  # where the compiled modules find their shared library
    return True


def active() -> bool:
    """Whether the request path runs compiled in this process."""
    from gateway import server

    return not (server.__file__ or "").endswith(".py")


def build(*, quiet: bool = False, root: Path = ROOT, modules: tuple[str, ...] = MODULES) -> Path:
    """Compiles ``modules`` of the sources under ``root`` (a checkout, or the site-packages of an install), unless
    that build exists; returns its directory."""
    target = cache_root() / key(root)
    if (target / "gateway").is_dir():
        return target
    from mypyc.build import mypycify
    from setuptools import Distribution

    target.parent.mkdir(parents=True, exist_ok=True)
    staging = Path(tempfile.mkdtemp(prefix="building-", dir=target.parent))
    here = Path.cwd()
    try:
        sources = staging / "src"
        for package in PACKAGES:
            shutil.copytree(root / package, sources / package, ignore=shutil.ignore_patterns("__pycache__"))
        (sources / "mypy.ini").write_text(MYPY_INI)
        os.chdir(sources)  # module names, and mypy's settings, are found from here
        extensions = mypycify(
            [f"gateway/{name}.py" for name in modules], target_dir=str(staging / "c"), group_name=GROUP
        )
        # setuptools' command machinery without setup(): the project's own pyproject.toml is not read for this.
        dist = Distribution({"name": GROUP, "ext_modules": extensions})
        dist.script_name = "dais gateway-build"
        dist.script_args = ["-q" if quiet else "-v", "build_ext", "--build-lib", str(staging / "lib")]
        dist.script_args += ["--build-temp", str(staging / "obj")]
        dist.parse_command_line()
        dist.run_commands()
        try:
            (staging / "lib").rename(target)
        except OSError:  # built meanwhile by another process: theirs is the same
            if not (target / "gateway").is_dir():
                raise
    finally:
        os.chdir(here)
        shutil.rmtree(staging, ignore_errors=True)
    return target


def prune(root: Path, *, keep: int = KEPT) -> None:
    """Removes all but the newest ``keep`` builds (each a few megabytes). Not only the present one: another
    checkout (a CI run of another commit, say) may be using its own at the same time."""
    builds = [entry for entry in root.iterdir() if not entry.name.startswith("building-")]
    builds.sort(key=lambda entry: entry.stat().st_mtime, reverse=True)
    for entry in builds[keep:]:
        shutil.rmtree(entry, ignore_errors=True)


def main() -> int:
    target = cache_root() / key()
    if (target / "gateway").is_dir():
        print(f"gateway.native: up to date ({target})")
        return 0
    print("gateway.native: compiling the gateway's request path with mypyc (about a minute) ...", flush=True)
    try:
        built = build(quiet=True)
    except (Exception, SystemExit) as exc:  # no mypy, no compiler: without a build the gateway is slower, not broken
        # (mypy's type errors end in SystemExit, after it printed them)
        print(f"gateway.native: could not compile ({exc!r}); the gateway runs as plain Python")
        return 0
    prune(built.parent)
    print(f"gateway.native: built {built}")
    return 0
