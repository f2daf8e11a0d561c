"""Per-API-key limits shared by every worker through Redis.

* :mod:`.semaphore`: concurrency slots (held until the remote task is final) and a
  first-come first-served line of waiters;
* :mod:`.rate`: request rate over every HTTP call (GCRA), with a pause for ``Retry-After``;
* :mod:`.adaptive`: the concurrency a key really has, learned from 429s (AIMD);
* :mod:`.key_limits`: :class:`KeyLimits`, the one object the rest of the worker uses.
"""

from __future__ import annotations

from .adaptive import AdaptiveLimit
from .key_limits import KeyLimits, LimitSnapshot
from .rate import RequestRate
from .semaphore import Acquire, SlotQueue

__all__ = ["Acquire", "AdaptiveLimit", "KeyLimits", "LimitSnapshot", "RequestRate", "SlotQueue"]
