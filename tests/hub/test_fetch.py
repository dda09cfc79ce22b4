"""`dais model fetch` against the local Hub: fresh, cached, resumed, confined, gated, flaky."""

from __future__ import annotations

import io
import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

from hub.fetch import MANIFEST, PARTIAL, FetchError, fetch, fetched, report_failure
from tests.fixtures.hub import HubServer, safetensors_bytes

MIB = 2**20


def run(
    hub: HubServer,
    dest: Path,
    *,
    repository: str,
    revision: str,
    include: list[str] | None = None,
    token: str | None = None,
) -> str:
    out = io.StringIO()
    fetch(
        repository=repository,
        revision=revision,
        dest=dest,
        include=include,
        token=token,
        endpoint=hub.url,
        deadline=5,
        out=out,
    )
    return out.getvalue()


def repo(hub: HubServer, name: str = "org/tiny", **kwargs: object) -> str:
    files = {
        "config.json": b'{"model_type": "gpt2"}',
        "model.safetensors": safetensors_bytes({"w": ("F32", [512, 512])}),
        "pytorch_model.bin": b"pickled weights we do not want",
        "sub/tokenizer.json": b"{}",
    }
    return hub.add_model(name, files, pipeline_tag="text-generation", **kwargs)  # type: ignore[arg-type]


def test_a_fresh_fetch_downloads_the_pinned_files_and_prefers_safetensors(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub)
    log = run(hub, tmp_path, repository="org/tiny", revision=sha)
    assert (tmp_path / "model.safetensors").read_bytes() == safetensors_bytes({"w": ("F32", [512, 512])})
    assert (tmp_path / "sub/tokenizer.json").read_bytes() == b"{}"
    assert not (tmp_path / "pytorch_model.bin").exists()
    assert (tmp_path / MANIFEST).exists()
    assert "3 files, 0 already present, 3 to download" in log
    assert "fetch complete" in log


def test_a_second_start_downloads_nothing(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub)
    run(hub, tmp_path, repository="org/tiny", revision=sha)
    hub.clear_requests()
    log = run(hub, tmp_path, repository="org/tiny", revision=sha)
    assert hub.downloads() == 0
    assert [r[0] for r in hub.requests] == ["GET"]  # one model-info call, no file request at all
    assert "3 already present, 0 to download" in log


def test_a_changed_file_on_disk_is_downloaded_again(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub)
    run(hub, tmp_path, repository="org/tiny", revision=sha)
    (tmp_path / "config.json").write_bytes(b"truncated")
    hub.clear_requests()
    run(hub, tmp_path, repository="org/tiny", revision=sha)
    assert hub.downloads() == 1
    assert (tmp_path / "config.json").read_bytes() == b'{"model_type": "gpt2"}'


def test_an_interrupted_download_resumes_with_a_range_request(hub: HubServer, tmp_path: Path) -> None:
    big = bytes(range(256)) * (24 * MIB // 256)
    sha = hub.add_model("org/big", {"model.safetensors": big}, pipeline_tag="text-generation")
    hub.cut_after(15 * MIB, path_contains="model.safetensors")
    run(hub, tmp_path, repository="org/big", revision=sha)
    assert (tmp_path / "model.safetensors").read_bytes() == big
    ranged = [r for r in hub.requests if r[0] == "GET" and r[2] and r[2].startswith("bytes=") and r[2] != "bytes=0-"]
    assert ranged, hub.requests  # the second request continued from where the first was cut


def test_only_the_included_gguf_file_is_fetched(hub: HubServer, tmp_path: Path) -> None:
    sha = hub.add_model("org/gguf", {"a-Q4_K_M.gguf": b"a" * 100, "a-Q8_0.gguf": b"b" * 200, "README.md": b"#"})
    run(hub, tmp_path, repository="org/gguf", revision=sha, include=["a-Q4_K_M.gguf"])
    assert sorted(p.name for p in tmp_path.iterdir() if not p.name.startswith(".")) == ["a-Q4_K_M.gguf"]


def test_a_complete_fetch_is_known_without_asking_the_hub_until_a_file_goes(hub: HubServer, tmp_path: Path) -> None:
    sha = hub.add_model("org/gguf2", {"a-Q4_K_M.gguf": b"a" * 100, "a-Q8_0.gguf": b"b" * 200})
    assert not fetched(tmp_path, ["a-Q4_K_M.gguf"])
    run(hub, tmp_path, repository="org/gguf2", revision=sha, include=["a-Q4_K_M.gguf"])
    assert fetched(tmp_path, ["a-Q4_K_M.gguf"])
    assert not fetched(tmp_path, ["a-Q8_0.gguf"])  # another file set: not fetched
    assert not fetched(tmp_path, None)
    (tmp_path / "a-Q4_K_M.gguf").unlink()
    assert not fetched(tmp_path, ["a-Q4_K_M.gguf"])


@pytest.mark.parametrize("remote", ["../escape.txt", "a/../../escape.txt", "/etc/escape"])
def test_remote_paths_outside_the_destination_are_refused(hub: HubServer, tmp_path: Path, remote: str) -> None:
    sha = hub.add_model("org/evil", {"config.json": b"{}", remote: b"x"}, hostile_paths=True)
    dest = tmp_path / "dest"
    with pytest.raises(FetchError, match="refusing remote path"):
        run(hub, dest, repository="org/evil", revision=sha)
    assert not (tmp_path / "escape.txt").exists()


def test_a_symlink_in_the_destination_is_not_followed(hub: HubServer, tmp_path: Path) -> None:
    sha = hub.add_model("org/link", {"sub/file.txt": b"x"})
    dest, outside = tmp_path / "dest", tmp_path / "outside"
    dest.mkdir()
    outside.mkdir()
    (dest / "sub").symlink_to(outside)
    with pytest.raises(FetchError, match="is a symlink"):
        run(hub, dest, repository="org/link", revision=sha)
    assert list(outside.iterdir()) == []


def test_a_gated_repo_without_a_token_says_what_to_do(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub, "org/gated", gated=True, tokens={"hf_reader_token"})
    with pytest.raises(FetchError, match="model org/gated is gated: accept its licence on the Hub"):
        run(hub, tmp_path, repository="org/gated", revision=sha)
    run(hub, tmp_path / "ok", repository="org/gated", revision=sha, token="hf_reader_token")
    assert (tmp_path / "ok/config.json").exists()


def test_three_503s_then_success(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub)
    hub.fail_next(3, status=503, path_contains="/resolve/")
    run(hub, tmp_path, repository="org/tiny", revision=sha)
    assert (tmp_path / "model.safetensors").exists()
    assert [r[3] for r in hub.requests if "/resolve/" in r[1]].count(503) == 3


def test_the_command_exits_non_zero_with_the_message_for_the_status(hub: HubServer, tmp_path: Path) -> None:
    sha = repo(hub, "org/gated", gated=True, tokens={"hf_reader_token"})
    env = {k: v for k, v in os.environ.items() if k not in ("HF_TOKEN", "DAIS_HUB__URL")}
    env["HF_HOME"] = str(tmp_path / "hf-home")  # no cached login
    result = subprocess.run(
        [
            sys.executable,
            "-m",
            "dais",
            "model",
            "fetch",
            "--repo",
            "org/gated",
            "--revision",
            sha,
            "--dest",
            str(tmp_path / "d"),
            "--endpoint",
            hub.url,
        ],
        capture_output=True,
        text=True,
        env=env,
        timeout=60,
    )
    assert result.returncode == 1
    assert "model fetch failed: model org/gated is gated: accept its licence" in result.stderr


def test_the_failure_message_goes_to_the_termination_log_only_where_it_exists(tmp_path: Path) -> None:
    log = tmp_path / "termination-log"
    report_failure("model fetch failed: x", termination_log=log)
    assert not log.exists()  # never created outside a container
    log.write_text("")
    report_failure("model fetch failed: x", termination_log=log)
    assert log.read_text() == "model fetch failed: x"


def test_too_little_disk_space_names_the_size_needed(
    hub: HubServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    sha = repo(hub)
    usage = shutil.disk_usage(tmp_path)
    monkeypatch.setattr(shutil, "disk_usage", lambda _: usage._replace(free=1000))
    with pytest.raises(
        FetchError, match=r"not enough disk space in .*: the model needs 1\.0 MiB more, 1000 bytes free"
    ):
        run(hub, tmp_path, repository="org/tiny", revision=sha)
    assert hub.downloads() == 0  # refused before the first byte


def test_a_partial_file_left_by_a_killed_container_resumes_where_it_stopped(hub: HubServer, tmp_path: Path) -> None:
    big = bytes(range(256)) * (12 * MIB // 256)
    sha = hub.add_model("org/big", {"model.safetensors": big}, pipeline_tag="text-generation")
    partial = tmp_path / PARTIAL / "model.safetensors.part"
    partial.parent.mkdir(parents=True)
    partial.write_bytes(big[: 5 * MIB])  # what a replica killed mid-download leaves behind
    run(hub, tmp_path, repository="org/big", revision=sha)
    assert (tmp_path / "model.safetensors").read_bytes() == big
    assert not partial.exists()
    file_gets = [r for r in hub.requests if r[0] == "GET" and "model.safetensors" in r[1]]
    assert [r[2] for r in file_gets] == [f"bytes={5 * MIB}-"]
