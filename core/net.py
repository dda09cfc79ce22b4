"""host:port, the one parser: listen addresses in settings, upstream URLs and Host headers."""

from __future__ import annotations


def split_host_port(value: str, *, default_port: int | None = None) -> tuple[str, int | None]:
    """``host:port``, ``[v6]:port``, ``host`` or ``[v6]`` → (host without brackets, port or ``default_port``).
    The host may be empty (``:8080``: the caller's default interface). A port that is not a number in 0-65535
    is a ValueError that says so."""
    if value.startswith("["):
        host, closed, rest = value[1:].partition("]")
        if not closed or (rest and not rest.startswith(":")):
            raise ValueError(f"{value!r}: an IPv6 address goes in brackets, as [::1]:8080")
        port = rest[1:]
    else:
        host, colon, port = value.rpartition(":")
        if not colon or ":" in host:  # no port, or a bare IPv6 address
            host, port = value, ""
    if not port:
        return host, default_port
    if not port.isdigit() or int(port) > 65535:
        raise ValueError(f"{value!r}: the port must be a number from 0 to 65535, as in 127.0.0.1:8080")
    return host, int(port)


def free_loopback_port() -> int:
    """A TCP port free on 127.0.0.1 now (the kernel's pick; a child process binds it a moment later)."""
    import socket

    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])
