"""Which errors are a database outage, and an outage logged once however many attempts fail in it."""

from __future__ import annotations

import logging

import psycopg
import pytest
from psycopg import errors
from sqlalchemy.exc import DBAPIError, IntegrityError, OperationalError

from core.db.outage import UP, Outage, describe, unavailable
from tests.factories import Ticks


def _wrapped(orig: Exception, *, invalidated: bool = False) -> DBAPIError:
    return DBAPIError.instance("SELECT 1", {}, orig, psycopg.Error, connection_invalidated=invalidated)


@pytest.mark.parametrize(
    ("error", "outage"),
    [
        (psycopg.OperationalError("connection failed: Connection refused"), True),  # connecting: no SQLSTATE
        (errors.AdminShutdown("terminating connection due to administrator command"), True),
        (errors.CannotConnectNow("the database system is starting up"), True),
        (errors.ConnectionFailure("server closed the connection"), True),
        (errors.SerializationFailure("could not serialize access"), False),  # about the statement, not the server
        (errors.QueryCanceled("canceling statement due to statement timeout"), False),
        (errors.UniqueViolation("duplicate key"), False),
        (ValueError("not a database error"), False),
        (_wrapped(errors.AdminShutdown("x")), True),
        (_wrapped(errors.DeadlockDetected("x")), False),
        (_wrapped(psycopg.InterfaceError("the connection is closed"), invalidated=True), True),
    ],
)
def test_an_outage_is_a_failure_to_connect_or_a_connection_the_server_closed(error: Exception, outage: bool) -> None:
    assert unavailable(error) is outage


def test_wrapped_errors_are_sorted_by_sqlalchemys_class_too() -> None:
    assert isinstance(_wrapped(errors.AdminShutdown("x")), OperationalError)
    assert isinstance(_wrapped(errors.UniqueViolation("x")), IntegrityError)
    assert describe(_wrapped(errors.AdminShutdown("going down\nDETAIL: more"))) == "AdminShutdown: going down"


def test_an_outage_is_logged_when_it_begins_and_when_it_ends(caplog: pytest.LogCaptureFixture) -> None:
    ticks = Ticks()
    outage = Outage("test", monotonic=ticks)
    caplog.set_level(logging.INFO, logger="dais.db")

    assert [outage.failed(errors.AdminShutdown("x")) for _ in range(3)] == [0, 1, 2]  # backoff attempts
    assert outage.down
    assert UP.labels("test")._value.get() == 0
    ticks.now += 12.5
    outage.recovered()
    outage.recovered()
    assert not outage.down
    assert UP.labels("test")._value.get() == 1
    assert outage.failed(psycopg.OperationalError("refused")) == 0  # a new outage counts from zero

    assert [r.getMessage() for r in caplog.records] == [
        "database unavailable (test connection: AdminShutdown: x): waiting for it, retrying with backoff",
        "database back (test connection) after 12.5 s, 3 attempt(s) failed",
        "database unavailable (test connection: OperationalError: refused): waiting for it, retrying with backoff",
    ]
