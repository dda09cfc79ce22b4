"""The Hub, as the API needs it: one model's facts at one revision, with transient errors retried.

Transient failures (connection errors, timeouts, 429 and 5xx) are retried with exponential backoff and full
jitter until a deadline; anything else becomes a ``HubError`` whose message says what to do. A server never
reads a token saved on its own disk: a call carries the caller's token, or none.
"""

from __future__ import annotations

import hashlib
import random
import threading
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import TypeVar

import httpx2
from huggingface_hub import HfApi, get_hf_file_metadata, hf_hub_url
from huggingface_hub.errors import (
    DisabledRepoError,
    GatedRepoError,
    HfHubHTTPError,
    RepositoryNotFoundError,
    RevisionNotFoundError,
)

from core.retry import Backoff, GaveUp, retrying

T = TypeVar("T")
CACHE_ENTRIES = 1024


class HubError(Exception):
    """The Hub said no, or could not be reached; ``message`` tells the user what to do."""

    def __init__(self, message: str, *, kind: str) -> None:
        super().__init__(message)
        self.message = message
        self.kind = kind  # not_found | no_access | bad_revision | unavailable


@dataclass(frozen=True, slots=True)
class ModelFacts:
    repository: str
    sha: str
    pipeline_tag: str | None
    library: str | None
    gated: bool
    files: dict[str, int | None]
    lfs_sha256: dict[str, str] = field(default_factory=dict)
    safetensors_parameters: dict[str, int] | None = None


class HubClient:
    def __init__(
        self,
        *,
        endpoint: str | None,
        timeout: float,
        deadline: float,
        sleep: Callable[[float], None] = time.sleep,
        monotonic: Callable[[], float] = time.monotonic,
        rng: random.Random | None = None,
        cache_seconds: float = 0.0,
    ) -> None:
        self.endpoint = endpoint
        self._api = HfApi(endpoint=endpoint, token=False, library_name="dais")
        self._timeout = timeout
        self._deadline = deadline
        self._sleep = sleep
        self._monotonic = monotonic
        self._backoff = Backoff(base=0.5, cap=8.0, rng=rng or random.Random())
        self._cache_seconds = cache_seconds
        self._cache: OrderedDict[tuple[str, str | None, str | None], tuple[float, ModelFacts]] = OrderedDict()
        self._lock = threading.Lock()

    def model(self, repository: str, revision: str | None, token: str | None) -> ModelFacts:
        """The model at ``revision`` (default branch when None): commit sha, task, files with sizes.

        Answers are remembered per (model, revision, token) for ``cache_seconds``: creating many endpoints of
        one model asks the Hub once, and a branch moving on is seen within that time.
        """
        key = (repository, revision, hashlib.sha256(token.encode()).hexdigest() if token else None)
        now = self._monotonic()
        with self._lock:
            cached = self._cache.get(key)
            if cached is not None and now - cached[0] < self._cache_seconds:
                self._cache.move_to_end(key)
                return cached[1]
        facts = self._fetch(repository, revision, token)
        with self._lock:
            self._cache[key] = (now, facts)
            while len(self._cache) > CACHE_ENTRIES:
                self._cache.popitem(last=False)
        return facts

    def _fetch(self, repository: str, revision: str | None, token: str | None) -> ModelFacts:
        info = self._retrying(
            lambda: self._api.model_info(
                repository, revision=revision, files_metadata=True, token=token or False, timeout=self._timeout
            ),
            what=f"model {repository}",
            revision=revision,
            repository=repository,
        )
        files: dict[str, int | None] = {}
        lfs: dict[str, str] = {}
        for sibling in info.siblings or []:
            files[sibling.rfilename] = sibling.size
            if sibling.lfs is not None:
                lfs[sibling.rfilename] = sibling.lfs.sha256
        parameters = dict(info.safetensors.parameters) if info.safetensors else None
        if info.gated and files:
            # A gated repo's info is public; its files are not. Ask for one file's metadata with the token now,
            # so a missing licence acceptance is a 400 at create rather than a crash loop at fetch.
            probe = "config.json" if "config.json" in files else sorted(files)[0]
            url = hf_hub_url(repository, probe, revision=str(info.sha), endpoint=self.endpoint)
            self._retrying(
                lambda: get_hf_file_metadata(url, token=token or False, timeout=self._timeout),
                what=f"model {repository}",
                revision=revision,
                repository=repository,
            )
        return ModelFacts(
            repository=repository,
            sha=str(info.sha),
            pipeline_tag=info.pipeline_tag,
            library=info.library_name,
            gated=bool(info.gated),
            files=files,
            lfs_sha256=lfs,
            safetensors_parameters=parameters,
        )

    def _retrying(self, call: Callable[[], T], *, what: str, repository: str, revision: str | None) -> T:
        try:
            return retrying(
                call,
                backoff=self._backoff,
                transient=_transient,
                deadline_s=self._deadline,
                sleep=self._sleep,
                monotonic=self._monotonic,
            )
        except (GatedRepoError, RepositoryNotFoundError, RevisionNotFoundError, DisabledRepoError) as exc:
            raise _explain(exc, repository=repository, revision=revision) from None
        except HfHubHTTPError as exc:
            status = exc.response.status_code if exc.response is not None else 0
            if status in (401, 403):
                raise _explain(exc, repository=repository, revision=revision) from None
            raise HubError(f"the Hub refused {what} ({status}): {exc}", kind="unavailable") from None
        except GaveUp as exc:
            raise HubError(
                f"the Hub is unreachable ({type(exc.last).__name__}: {exc.last}) after {exc.attempts} attempts: "
                "retry later, or pin model.revision to a commit sha to deploy without it",
                kind="unavailable",
            ) from None


def _transient(exc: Exception) -> bool:
    """Connection errors, timeouts, 429 and 5xx are worth another try; a refusal or a missing repo is not."""
    if isinstance(exc, GatedRepoError | RepositoryNotFoundError | RevisionNotFoundError | DisabledRepoError):
        return False
    if isinstance(exc, HfHubHTTPError):
        status = exc.response.status_code if exc.response is not None else 0
        return status == 429 or status >= 500
    return isinstance(exc, httpx2.TransportError | OSError)


def _explain(exc: Exception, *, repository: str, revision: str | None) -> HubError:
    authorize = (
        "set the namespace's Hub token (PUT /api/namespaces/{namespace}/hub-token) or an HF_TOKEN secret on the "
        "endpoint, with read access"
    )
    if isinstance(exc, GatedRepoError):
        return HubError(
            f"model {repository} is gated: accept its licence on the Hub with the account whose token you use, "
            f"and {authorize}",
            kind="no_access",
        )
    if isinstance(exc, RevisionNotFoundError):
        return HubError(
            f"revision {revision!r} not found in model {repository}: use a branch, tag or commit sha that exists",
            kind="bad_revision",
        )
    if isinstance(exc, DisabledRepoError):
        return HubError(f"model {repository} is disabled on the Hub: choose another model", kind="not_found")
    if isinstance(exc, RepositoryNotFoundError):
        return HubError(f"model {repository} not found on the Hub (if it is private, {authorize})", kind="not_found")
    return HubError(
        f"the Hub refused access to model {repository} (401/403): accept its licence on the Hub if it is gated, "
        f"and {authorize}",
        kind="no_access",
    )
