"""The Hub is never asked while a transaction is open.

A write that needs the Hub's answer (a create, an update that changes the model, a catalog deploy sizing its
hardware) runs its transaction until it knows the question, then raises ``NeedsHub``: the transaction rolls
back, releasing its row locks and its pool connection, the Hub is asked with none held (it may take its
retries, up to ``DAIS_HUB__RETRY_DEADLINE_SECONDS``), and the transaction runs again from the start with the
answer. That second run locks, re-reads and re-checks everything, so what changed meanwhile is seen: an answer
is used only for the very question it answers (model, revision, task, engine, hardware and token; a pause or a
tag changes none of them), and a question that changed is asked anew, a bounded number of times.
"""

from __future__ import annotations

from collections.abc import Callable, Hashable
from typing import TypeVar

from api.errors import Conflict

T = TypeVar("T")
QUESTIONS = 4  # a catalog deploy asks two; more means the spec kept changing under the request


class NeedsHub(Exception):
    """Raised inside a transaction for a question not answered yet: roll back, ``ask``, run again."""

    def __init__(self, key: Hashable, ask: Callable[[], object]) -> None:
        super().__init__(f"the Hub's answer to {key!r} is needed")
        self.key = key
        self.ask = ask


class Answers:
    """What the Hub said during one request, by question."""

    def __init__(self) -> None:
        self._found: dict[Hashable, object] = {}

    def get(self, key: Hashable, ask: Callable[[], T]) -> T:
        """The answer to ``key``; raises ``NeedsHub`` (with ``ask``, which answers it) when not asked yet."""
        if key in self._found:
            return self._found[key]  # type: ignore[return-value]  # stored by ask, which returns a T
        raise NeedsHub(key, ask)

    def add(self, key: Hashable, answer: object) -> None:
        self._found[key] = answer


def with_hub(run: Callable[[Answers], T], *, what: str) -> T:
    """``run`` (one transaction, given the answers so far), again after each question it raises, asked outside.

    A 409 when the questions do not settle: ``what`` changed that often while the Hub was being asked."""
    answers = Answers()
    for asked in range(QUESTIONS + 1):
        try:
            return run(answers)
        except NeedsHub as need:
            if asked == QUESTIONS:
                break
            answers.add(need.key, need.ask())
    raise Conflict(
        f"{what} kept changing while the Hub was asked about its model ({QUESTIONS} questions): send the request "
        "again once it has stopped changing"
    )
