from __future__ import annotations

import pytest

from core.net import split_host_port


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("127.0.0.1:8080", ("127.0.0.1", 8080)),
        ("localhost:0", ("localhost", 0)),
        (":9091", ("", 9091)),
        ("example.com", ("example.com", None)),
        ("[::1]:8081", ("::1", 8081)),
        ("[::1]", ("::1", None)),
        ("::1", ("::1", None)),
        ("pod-1.svc.cluster.local:80", ("pod-1.svc.cluster.local", 80)),
    ],
)
def test_host_and_port(value: str, expected: tuple[str, int | None]) -> None:
    assert split_host_port(value) == expected


def test_the_default_port_fills_a_missing_one() -> None:
    assert split_host_port("example.com", default_port=80) == ("example.com", 80)
    assert split_host_port("example.com:8000", default_port=80) == ("example.com", 8000)


@pytest.mark.parametrize("value", ["host:http", "host:70000", "[::1", "[::1]8080", "host:-1"])
def test_a_bad_port_says_what_is_wrong(value: str) -> None:
    with pytest.raises(ValueError, match=r"port|bracket"):
        split_host_port(value)
