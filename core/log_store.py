"""Endpoint log history on Kubernetes: the operator's VictoriaLogs, queried over its HTTP API in LogsQL.

Dais runs no collector. The operator's (Vector, Fluent Bit, vlagent, ...) ships every pod's lines to VictoriaLogs'
``/insert/jsonline`` as records with the line in ``_msg``, its time in ``_time``, ``stream`` (stdout | stderr), the
stream fields ``namespace``, ``pod`` and ``container``, and the pod's labels as fields named by their keys —
``dais.dev/endpoint-id`` among them, which is how an endpoint's lines are found (never by pod name). A collector
that names them otherwise is mapped by ``LogFields``.

Retention: VictoriaLogs drops what is older than its ``-retentionPeriod``, so the chart (or the operator) starts
it with ``-retentionPeriod=<DAIS_LOGS__RETENTION_DAYS>d``. This client never asks for anything older than
``retention_days`` either, so a store that keeps more serves what the setting promises, no more.

Every query is one LogsQL string built here from quoted literals: a user's search text can never change its
meaning (see ``quote``).
"""

from __future__ import annotations

import json
from collections.abc import Callable
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from typing import Any

import httpx

from core.domain.timefmt import utc_now
from core.kube.labels import ENDPOINT_ID
from core.replica_logs import LogLine
from core.settings import LogsSettings

QUERY_PATH = "/select/logsql/query"


class LogStoreError(Exception):
    """The log store is unreachable, too slow, or refused the query; the message names its URL and what to do."""


@dataclass(frozen=True, slots=True)
class StoredReplica:
    """A replica (pod) the store holds lines of, with the times of its first and last line kept."""

    id: str
    first_seen: datetime
    last_seen: datetime


@dataclass(frozen=True, slots=True)
class LogFields:
    """The field names the collector writes; the line and its time are always VictoriaLogs' ``_msg`` and
    ``_time``."""

    endpoint: str = ENDPOINT_ID
    replica: str = "pod"
    stream: str = "stream"


def quote(text: str) -> str:
    """``text`` as a double-quoted LogsQL string literal (Go's syntax: only ``"``, ``\\`` and control characters
    need escaping), whatever it holds: quotes, pipes, colons, asterisks, ``#`` comments and newlines stay
    literal characters of the value."""
    out = ['"']
    for char in text:
        if char in '"\\':
            out.append("\\" + char)
        elif ord(char) < 0x20 or ord(char) == 0x7F:
            out.append(f"\\x{ord(char):02x}")
        else:
            out.append(char)
    out.append('"')
    return "".join(out)


def lines_query(
    endpoint_id: str,
    *,
    since: datetime,
    until: datetime | None = None,
    replica: str | None = None,
    search: str | None = None,
    tail: int,
    fields: LogFields = LogFields(),
) -> str:
    """The last ``tail`` lines of the endpoint within [``since``, ``until``), newest first, that contain ``search``
    (a plain substring, as the local runtime's files are searched)."""
    filters = [f"{quote(fields.endpoint)}:={quote(endpoint_id)}", _time_filter(since, until)]
    if replica is not None:
        filters.append(f"{quote(fields.replica)}:={quote(replica)}")
    if search:
        filters.append(f"_msg:*{quote(search)}*")
    return (
        " AND ".join(filters)
        + f" | sort by (_time desc) | limit {tail}"
        + f" | fields _time, {quote(fields.replica)}, {quote(fields.stream)}, _msg"
    )


def replicas_query(endpoint_id: str, *, since: datetime, fields: LogFields = LogFields()) -> str:
    """Each replica of the endpoint with lines since ``since``, with the times of its first and last line."""
    return (
        f"{quote(fields.endpoint)}:={quote(endpoint_id)} AND {_time_filter(since, None)}"
        f" | stats by ({quote(fields.replica)}) min(_time) first_seen, max(_time) last_seen"
    )


class LogStore:
    """A VictoriaLogs at ``url`` (its base URL, e.g. ``http://victorialogs:9428``)."""

    def __init__(
        self,
        url: str,
        *,
        retention_days: int,
        timeout: float,
        fields: LogFields = LogFields(),
        clock: Callable[[], datetime] = utc_now,
        transport: httpx.BaseTransport | None = None,
    ) -> None:
        self.url = url.rstrip("/")
        self.retention = timedelta(days=retention_days)
        self.timeout = timeout
        self.fields = fields
        self.clock = clock
        self._client = httpx.Client(base_url=self.url, timeout=timeout, transport=transport)

    def lines(
        self,
        endpoint_id: str,
        *,
        replica: str | None = None,
        since: datetime | None = None,
        until: datetime | None = None,
        search: str | None = None,
        tail: int,
    ) -> list[LogLine]:
        """The last ``tail`` lines of the endpoint (of one ``replica`` when given) within [``since``, ``until``) and
        containing ``search``, oldest first. ``since`` is raised to the retention's start."""
        since = self._floor(since)
        until = _aware(until) if until is not None else None
        if tail < 1 or (until is not None and until <= since):
            return []
        query = lines_query(
            endpoint_id, since=since, until=until, replica=replica, search=search, tail=tail, fields=self.fields
        )
        found = [
            LogLine(
                time=self._time(record.get("_time")),
                replica=str(record.get(self.fields.replica) or ""),
                stream=str(record.get(self.fields.stream) or "stdout"),
                line=str(record.get("_msg") or ""),
            )
            for record in self._query(query)
        ]
        found.reverse()
        return found

    def replicas(self, endpoint_id: str) -> list[StoredReplica]:
        """Every replica of the endpoint with lines still kept, gone ones included, by first line."""
        query = replicas_query(endpoint_id, since=self._floor(None), fields=self.fields)
        found = [
            StoredReplica(
                id=str(record[self.fields.replica]),
                first_seen=self._time(record.get("first_seen")),
                last_seen=self._time(record.get("last_seen")),
            )
            for record in self._query(query)
            if record.get(self.fields.replica)
        ]
        return sorted(found, key=lambda replica: (replica.first_seen, replica.id))

    def _floor(self, since: datetime | None) -> datetime:
        floor = self.clock() - self.retention
        return floor if since is None else max(_aware(since), floor)

    def _time(self, value: object) -> datetime:
        # RFC 3339 in UTC with up to nanoseconds; datetime keeps microseconds.
        try:
            return datetime.fromisoformat(str(value).replace("Z", "+00:00"))
        except ValueError:
            raise LogStoreError(
                f"log store {self.url} answered a record with no valid time ({value!r}); check that "
                "DAIS_LOGS__STORE_URL is a VictoriaLogs base URL"
            ) from None

    def _query(self, query: str) -> list[dict[str, Any]]:
        # The server's own deadline as well, so it stops working on a query nobody waits for any more.
        form = {"query": query, "timeout": f"{self.timeout:g}s"}
        try:
            response = self._client.post(QUERY_PATH, data=form)
        except httpx.ConnectTimeout as exc:
            raise self._unreachable(exc) from None
        except httpx.TimeoutException:
            raise LogStoreError(
                f"log store {self.url} did not answer within {self.timeout:g}s: narrow the time range or the "
                "search, or raise DAIS_LOGS__TIMEOUT_SECONDS"
            ) from None
        except httpx.HTTPError as exc:
            raise self._unreachable(exc) from None
        if response.status_code != 200:
            raise LogStoreError(
                f"log store {self.url} answered {response.status_code} to {QUERY_PATH}: "
                f"{response.text.strip()[:300]!r}; check that DAIS_LOGS__STORE_URL is VictoriaLogs' base URL (what "
                "comes before /select) and that this process may query it"
            )
        try:
            records = [json.loads(raw) for raw in response.text.splitlines() if raw.strip()]
        except ValueError:
            records = [None]
        if not all(isinstance(record, dict) for record in records):
            raise LogStoreError(
                f"log store {self.url} answered {QUERY_PATH} with something other than JSON lines: "
                f"{response.text[:200]!r}; check that DAIS_LOGS__STORE_URL is a VictoriaLogs base URL"
            )
        return records

    def _unreachable(self, exc: httpx.HTTPError) -> LogStoreError:
        return LogStoreError(
            f"log store {self.url} is unreachable ({exc or type(exc).__name__}): check that VictoriaLogs runs there "
            "and that DAIS_LOGS__STORE_URL is its base URL"
        )

    def close(self) -> None:
        self._client.close()

    def __enter__(self) -> LogStore:
        return self

    def __exit__(self, *_: object) -> None:
        self.close()


def open_log_store(settings: LogsSettings, *, clock: Callable[[], datetime] = utc_now) -> LogStore | None:
    """The configured store, or None when ``DAIS_LOGS__STORE_URL`` is unset (no history on Kubernetes)."""
    if not settings.store_url:
        return None
    return LogStore(
        settings.store_url, retention_days=settings.retention_days, timeout=settings.timeout_seconds, clock=clock
    )


def _time_filter(since: datetime, until: datetime | None) -> str:
    if until is None:
        return f"_time:>={_rfc3339(since)}"
    return f"_time:[{_rfc3339(since)}, {_rfc3339(until)})"


def _aware(moment: datetime) -> datetime:
    return moment if moment.tzinfo is not None else moment.replace(tzinfo=UTC)


def _rfc3339(moment: datetime) -> str:
    return _aware(moment).astimezone(UTC).isoformat(timespec="microseconds").removesuffix("+00:00") + "Z"
