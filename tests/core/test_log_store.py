"""core.log_store against a real VictoriaLogs fed the way an operator's collector feeds it."""

from __future__ import annotations

import socket
import uuid
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta

import pytest

from core.log_store import LogStore, LogStoreError, StoredReplica, lines_query, open_log_store, quote, replicas_query
from core.replica_logs import LogLine
from core.settings import LogsSettings, Settings
from tests.fixtures.postgres import free_port
from tests.fixtures.victorialogs import LogCollector

# Line times are recent (VictoriaLogs refuses lines outside its retention); the store's clock is a fixed moment after.
BASE = datetime.now(UTC).replace(microsecond=123456) - timedelta(hours=1)
NOW = BASE + timedelta(hours=1)


def at(seconds: float) -> datetime:
    return BASE + timedelta(seconds=seconds)


def new_endpoint_id() -> str:
    return uuid.uuid4().hex  # each test its own endpoint: the server is shared by the whole session


def store(url: str, *, retention_days: int = 30, timeout: float = 10) -> LogStore:
    return LogStore(url, retention_days=retention_days, timeout=timeout, clock=lambda: NOW)


@pytest.fixture
def log_store(victorialogs: str) -> Iterator[LogStore]:
    with store(victorialogs) as opened:
        yield opened


# --- the queries sent, without a server ---------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("text", "literal"),
    [
        ("plain", '"plain"'),
        ('say "hi"', '"say \\"hi\\""'),
        ("C:\\dir\\", '"C:\\\\dir\\\\"'),
        ("a | b: *c* # d", '"a | b: *c* # d"'),
        ("it's `x`", '"it\'s `x`"'),
        ("line\nbreak\ttab\x00\x7f", '"line\\x0abreak\\x09tab\\x00\\x7f"'),
        ("ünï ✓", '"ünï ✓"'),
    ],
)
def test_quote_makes_one_literal(text: str, literal: str) -> None:
    assert quote(text) == literal


def test_lines_query() -> None:
    since, until = datetime(2026, 11, 23, 12, tzinfo=UTC), datetime(2026, 11, 23, 13, tzinfo=UTC)
    assert lines_query("ep1", since=since, until=until, replica="ep-a-1", search='x" OR *', tail=5) == (
        '"dais.dev/endpoint-id":="ep1" AND _time:[2026-11-23T12:00:00.000000Z, 2026-11-23T13:00:00.000000Z)'
        ' AND "pod":="ep-a-1" AND _msg:*"x\\" OR *"*'
        ' | sort by (_time desc) | limit 5 | fields _time, "pod", "stream", _msg'
    )
    assert lines_query("ep1", since=since, tail=1) == (
        '"dais.dev/endpoint-id":="ep1" AND _time:>=2026-11-23T12:00:00.000000Z'
        ' | sort by (_time desc) | limit 1 | fields _time, "pod", "stream", _msg'
    )


def test_replicas_query() -> None:
    assert replicas_query("ep1", since=datetime(2026, 11, 23, 12, tzinfo=UTC)) == (
        '"dais.dev/endpoint-id":="ep1" AND _time:>=2026-11-23T12:00:00.000000Z'
        ' | stats by ("pod") min(_time) first_seen, max(_time) last_seen'
    )


def test_settings(monkeypatch: pytest.MonkeyPatch) -> None:
    assert Settings().logs == LogsSettings(store_url=None, retention_days=30)
    assert open_log_store(LogsSettings()) is None
    monkeypatch.setenv("DAIS_LOGS__STORE_URL", "http://victorialogs:9428/")
    monkeypatch.setenv("DAIS_LOGS__RETENTION_DAYS", "7")
    logs = Settings().logs
    assert (logs.store_url, logs.retention_days) == ("http://victorialogs:9428/", 7)
    opened = open_log_store(logs)
    assert opened is not None
    assert opened.url == "http://victorialogs:9428"
    assert opened.retention == timedelta(days=7)
    opened.close()


# --- against the real store ---------------------------------------------------------------------------------------


def test_lines_of_one_endpoint_oldest_first(log_collector: LogCollector, log_store: LogStore) -> None:
    mine, other = new_endpoint_id(), new_endpoint_id()
    log_collector.ship(endpoint_id=mine, pod="ep-a-1", lines=[(at(1), "stdout", "loading"), (at(4), "stdout", "ready")])
    log_collector.ship(endpoint_id=mine, pod="ep-a-2", lines=[(at(2), "stderr", "warning: slow disk")])
    # Another endpoint's pod, in the same namespace, at the same times, with the same words.
    log_collector.ship(
        endpoint_id=other, pod="ep-b-1", lines=[(at(1), "stdout", "loading"), (at(3), "stderr", "ready secret")]
    )

    assert log_store.lines(mine, tail=100) == [
        LogLine(at(1), "ep-a-1", "stdout", "loading"),
        LogLine(at(2), "ep-a-2", "stderr", "warning: slow disk"),
        LogLine(at(4), "ep-a-1", "stdout", "ready"),
    ]
    assert log_store.lines(mine, search="ready", tail=100) == [LogLine(at(4), "ep-a-1", "stdout", "ready")]
    assert log_store.lines(mine, replica="ep-b-1", tail=100) == []
    assert log_store.lines(other, tail=100) == [
        LogLine(at(1), "ep-b-1", "stdout", "loading"),
        LogLine(at(3), "ep-b-1", "stderr", "ready secret"),
    ]
    assert log_store.lines(new_endpoint_id(), tail=100) == []


def test_lines_of_one_replica(log_collector: LogCollector, log_store: LogStore) -> None:
    endpoint = new_endpoint_id()
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-1", lines=[(at(1), "stdout", "one"), (at(3), "stdout", "three")])
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-2", lines=[(at(2), "stdout", "two")])
    # The init container's lines belong to the pod too.
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-2", container="fetch", lines=[(at(0), "stderr", "fetching")])

    assert [line.line for line in log_store.lines(endpoint, replica="ep-a-1", tail=100)] == ["one", "three"]
    assert [line.line for line in log_store.lines(endpoint, replica="ep-a-2", tail=100)] == ["fetching", "two"]
    assert log_store.lines(endpoint, replica="ep-a", tail=100) == []  # a pod name is matched whole


def test_time_range_is_since_inclusive_until_exclusive(log_collector: LogCollector, log_store: LogStore) -> None:
    endpoint = new_endpoint_id()
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-1", lines=[(at(s), "stdout", f"line {s}") for s in range(5)])

    def texts(**window: datetime) -> list[str]:
        return [line.line for line in log_store.lines(endpoint, tail=100, **window)]

    assert texts(since=at(1), until=at(3)) == ["line 1", "line 2"]
    assert texts(since=at(3)) == ["line 3", "line 4"]
    assert texts(until=at(2)) == ["line 0", "line 1"]
    assert texts(since=at(1.5), until=at(1.6)) == []
    assert texts(since=at(3), until=at(1)) == []
    # Naive times are UTC.
    assert texts(since=at(4).replace(tzinfo=None)) == ["line 4"]
    assert texts(since=at(1), until=at(2).replace(tzinfo=None)) == ["line 1"]


def test_tail_is_the_last_lines_oldest_first(log_collector: LogCollector, log_store: LogStore) -> None:
    endpoint = new_endpoint_id()
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-1", lines=[(at(s), "stdout", f"line {s}") for s in range(10)])
    log_collector.ship(
        endpoint_id=endpoint, pod="ep-a-2", lines=[(at(s + 0.5), "stderr", f"odd {s}") for s in range(10)]
    )

    assert [line.line for line in log_store.lines(endpoint, tail=3)] == ["odd 8", "line 9", "odd 9"]
    assert [line.line for line in log_store.lines(endpoint, replica="ep-a-1", tail=2)] == ["line 8", "line 9"]
    assert [line.line for line in log_store.lines(endpoint, search="line", until=at(5), tail=2)] == ["line 3", "line 4"]
    assert len(log_store.lines(endpoint, tail=1000)) == 20
    assert log_store.lines(endpoint, tail=0) == []


CORPUS = [
    'say "hello" to the world',
    "it's a 'single' quote",
    "a | b | stats count() rows",
    "key: value; other:thing",
    "glob *.safetensors and a*b",
    "C:\\models\\llama",
    "`backtick` and $(subshell) ${var}",
    "# not a comment",
    "tab\tseparated",
    "ünïcödé ✓ 模型",
    "error: CUDA out of memory",
    "errors: 0",
    "(paren) [bracket] {brace}",
    "AND OR NOT -minus !bang",
    "_time:5m _msg:x",
]


@pytest.fixture(scope="module")
def searchable(victorialogs: str) -> str:
    """An endpoint whose one replica printed CORPUS."""
    endpoint = new_endpoint_id()
    collector = LogCollector(victorialogs)
    collector.ship(endpoint_id=endpoint, pod="ep-s-1", lines=[(at(i), "stdout", text) for i, text in enumerate(CORPUS)])
    # The same lines under another endpoint: a search must never reach them.
    collector.ship(
        endpoint_id=new_endpoint_id(), pod="ep-t-1", lines=[(at(i), "stdout", text) for i, text in enumerate(CORPUS)]
    )
    collector.close()
    return endpoint


@pytest.mark.parametrize(
    "needle",
    [
        '"hello"',
        "it's",
        "'single'",
        "| stats",
        "count()",
        "key: value",
        ":thing",
        "*.safetensors",
        "a*b",
        "*",
        "\\models\\",
        "\\",
        "`backtick`",
        "${var}",
        "# not",
        "\t",
        "✓ 模",
        "rror",
        "error:",
        "(paren) [",
        "{brace}",
        "AND OR",
        "-minus",
        "_time:5m",
        '"',
        "'",
        " ",
    ],
)
def test_search_is_a_literal_substring(searchable: str, log_store: LogStore, needle: str) -> None:
    expected = [text for text in CORPUS if needle in text]
    assert expected, "each needle is in the corpus"
    assert [line.line for line in log_store.lines(searchable, search=needle, tail=100)] == expected


@pytest.mark.parametrize("needle", ["ERROR", "hello world", 'x" OR "a', "* | limit 100", "\n", '\\"'])
def test_search_finds_nothing_it_should_not(searchable: str, log_store: LogStore, needle: str) -> None:
    assert log_store.lines(searchable, search=needle, tail=100) == []


def test_replicas_with_first_and_last_seen(log_collector: LogCollector, log_store: LogStore) -> None:
    endpoint, other = new_endpoint_id(), new_endpoint_id()
    # ep-a-1 is gone (scaled down); ep-a-2 replaced it.
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-1", lines=[(at(s), "stdout", "x") for s in (1, 2, 3)])
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-2", lines=[(at(s), "stdout", "y") for s in (3.5, 9)])
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-2", container="fetch", lines=[(at(3.25), "stderr", "z")])
    log_collector.ship(endpoint_id=other, pod="ep-b-1", lines=[(at(0), "stdout", "x")])

    assert log_store.replicas(endpoint) == [
        StoredReplica("ep-a-1", first_seen=at(1), last_seen=at(3)),
        StoredReplica("ep-a-2", first_seen=at(3.25), last_seen=at(9)),
    ]
    assert log_store.replicas(new_endpoint_id()) == []


def test_nothing_older_than_retention(victorialogs: str, log_collector: LogCollector) -> None:
    endpoint = new_endpoint_id()
    old, recent = NOW - timedelta(days=3), NOW - timedelta(hours=1)
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-1", lines=[(old, "stdout", "old")])
    log_collector.ship(endpoint_id=endpoint, pod="ep-a-2", lines=[(recent, "stdout", "recent")])

    with store(victorialogs, retention_days=30) as keeps_all:
        assert [line.line for line in keeps_all.lines(endpoint, tail=10)] == ["old", "recent"]
    with store(victorialogs, retention_days=2) as keeps_two_days:
        assert [line.line for line in keeps_two_days.lines(endpoint, tail=10)] == ["recent"]
        assert [line.line for line in keeps_two_days.lines(endpoint, since=old, tail=10)] == ["recent"]
        assert keeps_two_days.lines(endpoint, until=NOW - timedelta(days=2, seconds=1), tail=10) == []
        assert [replica.id for replica in keeps_two_days.replicas(endpoint)] == ["ep-a-2"]


# --- a store that cannot answer -----------------------------------------------------------------------------------


def test_store_down_is_a_clear_error() -> None:
    url = f"http://127.0.0.1:{free_port()}"  # nothing listens there
    with store(url) as down:
        with pytest.raises(LogStoreError, match=rf"log store {url} is unreachable .*DAIS_LOGS__STORE_URL"):
            down.lines(new_endpoint_id(), tail=10)
        with pytest.raises(LogStoreError, match=rf"log store {url} is unreachable"):
            down.replicas(new_endpoint_id())


def test_wrong_url_is_a_clear_error(victorialogs: str) -> None:
    url = f"{victorialogs}/select"  # a path the operator should not have added
    with store(url) as wrong, pytest.raises(LogStoreError, match=rf"log store {url} answered 4\d\d .*base URL"):
        wrong.lines(new_endpoint_id(), tail=10)


def test_silent_store_times_out() -> None:
    # A socket that listens but never answers: the connection is made, the query's answer never comes.
    with socket.socket() as silent:
        silent.bind(("127.0.0.1", 0))
        silent.listen()
        url = f"http://127.0.0.1:{silent.getsockname()[1]}"
        with store(url, timeout=0.3) as slow, pytest.raises(LogStoreError, match=rf"{url} did not answer within 0.3s"):
            slow.lines(new_endpoint_id(), tail=10)
