"""Row and request identifiers: 128 random bits as 32 hex digits, the shape of ``uuid4().hex``.

They come from a generator seeded once per process by the operating system (and again in a forked child),
not from ``uuid4``, which asks the kernel on every call: that system call gives the GIL away, and under load
the request's thread then waits up to a whole switch interval to get it back (a tenth of CREATE's profile).
Identifiers are not secrets, so a non-cryptographic generator with a random seed is enough for uniqueness.
"""

from __future__ import annotations

import os
import random

_generator = random.Random(os.urandom(32))
os.register_at_fork(after_in_child=lambda: _generator.seed(os.urandom(32)))


def new_id() -> str:
    return f"{_generator.getrandbits(128):032x}"
