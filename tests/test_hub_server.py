"""The local Hub fixture (tests/fixtures/hub.py) driven only by the real huggingface_hub client."""

from __future__ import annotations

import hashlib
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Literal

import pytest
from huggingface_hub import HfApi, hf_hub_download, snapshot_download
from huggingface_hub.errors import (
    GatedRepoError,
    HfHubHTTPError,
    RemoteEntryNotFoundError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from tests.fixtures.hub import HubServer, gguf_bytes, safetensors_bytes, safetensors_index

CONFIG = b'{"architectures": ["LlamaForCausalLM"], "model_type": "llama"}'
README = b"---\nlicense: apache-2.0\ntags: [chat]\n---\n# Tiny\n"
WEIGHTS = safetensors_bytes({"embed": ("BF16", [64, 16]), "norm": ("F32", [16])})  # 1024 BF16 + 16 F32


def tiny(
    hub: HubServer,
    repo_id: str = "org/tiny",
    *,
    gated: Literal["auto", "manual", False] = False,
    private: bool = False,
    tokens: Iterable[str] = (),
) -> str:
    files = {"config.json": CONFIG, "README.md": README, "model.safetensors": WEIGHTS}
    return hub.add_model(
        repo_id,
        files,
        pipeline_tag="text-generation",
        library_name="transformers",
        gated=gated,
        private=private,
        tokens=tokens,
    )


def test_model_info_reports_sha_sizes_parameters_and_task(hub: HubServer) -> None:
    sha = tiny(hub)
    api = HfApi(endpoint=hub.url, token=False)

    info = api.model_info("org/tiny", files_metadata=True)

    assert (info.id, info.sha, info.pipeline_tag, info.library_name) == (
        "org/tiny",
        sha,
        "text-generation",
        "transformers",
    )
    assert (info.private, info.gated, info.disabled) == (False, False, False)
    assert info.safetensors is not None
    assert (info.safetensors.parameters, info.safetensors.total) == ({"BF16": 1024, "F32": 16}, 1040)
    assert info.config == {"architectures": ["LlamaForCausalLM"], "model_type": "llama"}
    assert info.card_data is not None
    assert info.card_data.license == "apache-2.0"
    assert info.tags is not None
    assert {"chat", "transformers", "safetensors", "text-generation"} <= set(info.tags)
    assert info.last_modified is not None
    assert info.created_at is not None
    siblings = {s.rfilename: s for s in info.siblings or []}
    assert {name: s.size for name, s in siblings.items()} == {
        "config.json": len(CONFIG),
        "README.md": len(README),
        "model.safetensors": len(WEIGHTS),
    }
    weights = siblings["model.safetensors"]
    assert weights.lfs is not None
    assert weights.lfs.sha256 == hashlib.sha256(WEIGHTS).hexdigest()
    assert siblings["config.json"].lfs is None

    assert all(s.size is None for s in api.model_info("org/tiny").siblings or [])  # sizes only with files_metadata
    only = api.model_info("org/tiny", expand=["safetensors", "sha"])
    assert (only.sha, only.pipeline_tag, only.siblings) == (sha, None, None)
    assert only.safetensors is not None
    assert only.safetensors.total == 1040


def test_model_info_reports_gguf(hub: HubServer) -> None:
    hub.add_model("org/gguf", {"model-q4.gguf": gguf_bytes({"a": [32, 8], "b": [8]}, context_length=8192)})

    info = HfApi(endpoint=hub.url, token=False).model_info("org/gguf")

    assert info.gguf == {"total": 264, "architecture": "llama", "context_length": 8192}
    assert info.safetensors is None


def test_revisions_resolve_branches_tags_and_shas(hub: HubServer) -> None:
    old = hub.add_model("org/rev", {"config.json": b"{}"}, branches={"dev": {"config.json": b'{"dev": 1}'}})
    main = hub.add_model("org/rev", {"config.json": b'{"v": 2}'}, tags=["v2.0"])
    api = HfApi(endpoint=hub.url, token=False)

    dev = api.model_info("org/rev", revision="dev").sha
    assert len({old, main, dev}) == 3
    assert api.model_info("org/rev").sha == main
    assert api.model_info("org/rev", revision="v2.0").sha == main
    assert api.model_info("org/rev", revision=old).sha == old  # an older commit stays reachable by sha
    refs = api.list_repo_refs("org/rev")
    assert {b.name: b.target_commit for b in refs.branches} == {"main": main, "dev": dev}
    assert {t.name: t.target_commit for t in refs.tags} == {"v2.0": main}
    path = hf_hub_download("org/rev", "config.json", revision="dev", endpoint=hub.url, token=False)
    assert Path(path).read_bytes() == b'{"dev": 1}'


def test_safetensors_metadata_single_file_reads_the_header_with_ranges(hub: HubServer) -> None:
    tiny(hub)

    meta = HfApi(endpoint=hub.url, token=False).get_safetensors_metadata("org/tiny")

    assert (meta.sharded, meta.parameter_count) == (False, {"BF16": 1024, "F32": 16})
    ranged = [r for r in hub.requests if r.range is not None]
    assert [(r.method, r.range, r.status) for r in ranged] == [
        ("GET", "bytes=0-100000", 302),  # the resolve URL redirects to the CDN, which the range follows
        ("GET", "bytes=0-100000", 206),
    ]


def test_safetensors_metadata_reads_a_header_past_the_first_100kb_with_a_second_range(hub: HubServer) -> None:
    tensors = {f"model.layers.{i}.self_attn.q_proj.weight": ("F16", [2, 2]) for i in range(2000)}
    weights = safetensors_bytes(tensors)
    assert len(weights) > 100_000
    hub.add_model("org/wide", {"model.safetensors": weights})

    meta = HfApi(endpoint=hub.url, token=False).get_safetensors_metadata("org/wide")

    assert meta.parameter_count == {"F16": 8000}
    header = int.from_bytes(weights[:8], "little")
    assert [r.range for r in hub.requests if r.status == 206] == ["bytes=0-100000", f"bytes=8-{header + 7}"]


def test_safetensors_metadata_sharded(hub: HubServer) -> None:
    shards = {
        "model-00001-of-00002.safetensors": safetensors_bytes({"a": ("BF16", [10, 10])}),
        "model-00002-of-00002.safetensors": safetensors_bytes({"b": ("BF16", [5]), "c": ("F32", [3])}),
    }
    hub.add_model("org/sharded", {**shards, "model.safetensors.index.json": safetensors_index(shards)})
    api = HfApi(endpoint=hub.url, token=False)

    meta = api.get_safetensors_metadata("org/sharded")

    assert meta.sharded
    assert set(meta.files_metadata) == set(shards)
    assert meta.parameter_count == {"BF16": 105, "F32": 3}
    assert meta.weight_map == {"a": "model-00001-of-00002.safetensors"} | dict.fromkeys(
        ["b", "c"], "model-00002-of-00002.safetensors"
    )
    info = api.model_info("org/sharded")
    assert info.safetensors is not None
    assert info.safetensors.total == 108


def test_download_regular_and_lfs_files_into_a_local_dir(hub: HubServer, tmp_path: Path) -> None:
    sha = tiny(hub)
    target = tmp_path / "model"

    config = hf_hub_download("org/tiny", "config.json", endpoint=hub.url, token=False, local_dir=target)
    weights = hf_hub_download("org/tiny", "model.safetensors", endpoint=hub.url, token=False, local_dir=target)

    assert Path(config).read_bytes() == CONFIG
    assert Path(weights).read_bytes() == WEIGHTS
    assert [(r.method, r.status) for r in hub.requests] == [
        ("HEAD", 200),  # regular file: answered by the Hub itself
        ("GET", 200),
        ("HEAD", 302),  # LFS file: redirected to the CDN, on another origin, so the client stops there
        ("GET", 200),  # ... and fetches the CDN URL directly
    ]
    assert hub.downloads() == 2
    assert hub.downloads("/cdn-lfs/") == 1
    # local_dir mode remembers (commit, etag) per file, so a second call only asks the Hub for the etag.
    metadata = (target / ".cache/huggingface/download/model.safetensors.metadata").read_text().splitlines()
    assert metadata[:2] == [sha, hashlib.sha256(WEIGHTS).hexdigest()]
    hf_hub_download("org/tiny", "model.safetensors", endpoint=hub.url, token=False, local_dir=target)
    assert hub.downloads() == 2
    # With the commit sha as revision, it does not even ask.
    before = len(hub.requests)
    hf_hub_download("org/tiny", "model.safetensors", revision=sha, endpoint=hub.url, token=False, local_dir=target)
    assert len(hub.requests) == before


def test_download_a_file_served_from_disk(hub: HubServer, tmp_path: Path) -> None:
    blob = tmp_path / "weights.bin"
    blob.write_bytes(os.urandom(3 << 20))
    hub.add_model("org/disk", {"pytorch_model.bin": blob})

    path = hf_hub_download("org/disk", "pytorch_model.bin", endpoint=hub.url, token=False, cache_dir=tmp_path / "c")

    assert Path(path).read_bytes() == blob.read_bytes()


def test_snapshot_download_with_allow_patterns(hub: HubServer, tmp_path: Path) -> None:
    sha = tiny(hub)

    folder = snapshot_download(
        "org/tiny", endpoint=hub.url, token=False, allow_patterns=["*.json", "*.md"], local_dir=tmp_path / "snap"
    )

    files = sorted(p.name for p in Path(folder).iterdir() if p.is_file())
    assert files == ["README.md", "config.json"]
    paths = [r.path for r in hub.requests if r.method == "GET"]
    assert paths[:2] == ["/api/models/org/tiny/revision/main", f"/api/models/org/tiny/tree/{sha}"]
    assert hub.downloads("model.safetensors") == 0


def test_unknown_repo_revision_and_file(hub: HubServer) -> None:
    tiny(hub)
    api = HfApi(endpoint=hub.url, token=False)

    with pytest.raises(RepositoryNotFoundError):
        api.model_info("org/missing")
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/missing", "config.json", endpoint=hub.url, token=False)
    with pytest.raises(RevisionNotFoundError):
        api.model_info("org/tiny", revision="nope")
    with pytest.raises(RevisionNotFoundError):
        hf_hub_download("org/tiny", "config.json", revision="0" * 40, endpoint=hub.url, token=False)
    with pytest.raises(RemoteEntryNotFoundError):
        hf_hub_download("org/tiny", "missing.txt", endpoint=hub.url, token=False)
    assert {r.status for r in hub.requests} == {404}


def test_gated_repo_needs_a_token_with_access_for_files(hub: HubServer, tmp_path: Path) -> None:
    tiny(hub, "org/gated", gated="manual", tokens={"hf_granted"})

    # As on the Hub, a gated repo's card and file list are public; only its files are gated.
    assert HfApi(endpoint=hub.url, token=False).model_info("org/gated").gated == "manual"
    with pytest.raises(GatedRepoError) as anonymous:
        hf_hub_download("org/gated", "config.json", endpoint=hub.url, token=False, cache_dir=tmp_path / "a")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(GatedRepoError) as refused:
        hf_hub_download("org/gated", "config.json", endpoint=hub.url, token="hf_other", cache_dir=tmp_path / "b")
    assert refused.value.response.status_code == 403
    path = hf_hub_download("org/gated", "model.safetensors", endpoint=hub.url, token="hf_granted")
    assert Path(path).read_bytes() == WEIGHTS
    meta = HfApi(endpoint=hub.url, token="hf_granted").get_safetensors_metadata("org/gated")
    assert meta.parameter_count == {"BF16": 1024, "F32": 16}


def test_private_repo_is_not_found_without_its_token(hub: HubServer) -> None:
    sha = tiny(hub, "org/private", private=True, tokens={"hf_mine"})

    with pytest.raises(RepositoryNotFoundError) as anonymous:
        HfApi(endpoint=hub.url, token=False).model_info("org/private")
    assert anonymous.value.response.status_code == 401
    with pytest.raises(RepositoryNotFoundError):
        hf_hub_download("org/private", "config.json", endpoint=hub.url, token="hf_other")
    info = HfApi(endpoint=hub.url, token="hf_mine").model_info("org/private")
    assert (info.sha, info.private) == (sha, True)


def test_metadata_calls_do_not_retry_a_503(hub: HubServer) -> None:
    tiny(hub)
    api = HfApi(endpoint=hub.url, token=False)
    hub.fail_next(1, 503, "/api/models/")

    with pytest.raises(HfHubHTTPError) as failed:
        api.model_info("org/tiny")

    assert failed.value.response.status_code == 503
    assert api.model_info("org/tiny").pipeline_tag == "text-generation"
    assert [r.status for r in hub.requests] == [503, 200]


def test_tree_listing_retries_a_503(hub: HubServer) -> None:
    tiny(hub)
    hub.fail_next(2, 503, "/tree/", retry_after=0)  # Retry-After: 0 keeps the client's wait to its 1 s minimum

    files = HfApi(endpoint=hub.url, token=False).list_repo_files("org/tiny")

    assert sorted(files) == ["README.md", "config.json", "model.safetensors"]
    assert [r.status for r in hub.requests] == [503, 503, 200]


def test_download_retries_a_503_on_the_metadata_head_but_not_on_the_file_get(hub: HubServer, tmp_path: Path) -> None:
    tiny(hub)
    hub.fail_next(3, 503, "/resolve/", method="HEAD", retry_after=0)

    path = hf_hub_download("org/tiny", "config.json", endpoint=hub.url, token=False, cache_dir=tmp_path / "a")

    assert Path(path).read_bytes() == CONFIG
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 503)] * 3 + [("HEAD", 200), ("GET", 200)]

    hub.clear_requests()
    hub.fail_next(1, 503, "/cdn-lfs/")
    with pytest.raises(HfHubHTTPError) as failed:
        hf_hub_download("org/tiny", "model.safetensors", endpoint=hub.url, token=False, cache_dir=tmp_path / "b")
    assert failed.value.response.status_code == 503
    assert [(r.method, r.status) for r in hub.requests] == [("HEAD", 302), ("GET", 503)]


def test_an_interrupted_download_resumes_with_a_range_request(hub: HubServer, tmp_path: Path) -> None:
    weights = os.urandom(24 << 20)
    hub.add_model("org/big", {"model.bin": weights})
    # The client writes the body in 10 MiB chunks (DOWNLOAD_CHUNK_SIZE) and resumes from the last chunk written.
    hub.cut_after(15 << 20, "model.bin")

    path = hf_hub_download("org/big", "model.bin", endpoint=hub.url, token=False, local_dir=tmp_path / "model")

    assert Path(path).read_bytes() == weights
    gets = [(r.range, r.status) for r in hub.requests if r.method == "GET"]
    assert gets == [(None, 200), (f"bytes={10 << 20}-", 206)]
    assert hub.downloads("model.bin") == 2
    assert not list((tmp_path / "model").rglob("*.incomplete"))
