"""An asyncio event loop whose clock skips ahead whenever the only thing left to do is wait for a timer.

`run_virtual(coro)` runs `coro` like `asyncio.run`, but on a `VirtualTimeLoop`: `loop.time()` is the real
monotonic clock plus an offset, and when every task is waiting and no I/O is arriving, the offset jumps to the
next scheduled timer instead of sleeping until it. Everything that measures time through the loop (asyncio.sleep,
asyncio.timeout, `call_at`, aiohttp's timeouts, turnout's TimeoutMonitor, a Router given `clock=loop.time`) then
behaves exactly as in real time, in the same order, while a 30-second attempt timeout or a 5-minute breaker
recovery costs milliseconds. Real I/O (loopback fake upstreams) runs in real time and is never skipped over.

"Nothing is arriving" is decided conservatively: the selector first waits `grace` seconds of real time for I/O
(after I/O happened; a wait that follows a jump with nothing in between waits only `QUIET_GRACE`), and it keeps
waiting while any registered socket still has unacknowledged bytes in flight (Linux: data a peer in this process
wrote that the kernel has not delivered yet) or waits to become writable (a connection being opened), so a busy
machine cannot turn a prompt answer into a spurious timeout. Work in threads is not tracked: do not use it for
code that waits on executor threads.
"""

from __future__ import annotations

import asyncio
import selectors
import sys
import time
from collections.abc import Coroutine, Mapping
from typing import Any, TypeVar

T = TypeVar("T")

DEFAULT_GRACE = 0.01  # real seconds of quiet before the clock may jump
QUIET_GRACE = 0.001  # the same, when the loop has only run timers since its last jump (periodic housekeeping)
_IN_FLIGHT_LIMIT = 1.0  # real seconds to keep waiting for bytes in flight before jumping anyway
_EPSILON = 1e-6  # land just past the timer, never a rounding error short of it

try:  # Linux: bytes a socket sent that its peer has not acknowledged yet
    import fcntl
    import struct
    import termios

    def _unacknowledged(fd: int) -> int:
        try:
            return struct.unpack("i", fcntl.ioctl(fd, termios.TIOCOUTQ, b"\0\0\0\0"))[0]
        except OSError:  # not a socket (the loop's self-pipe), or closed meanwhile
            return 0

except ImportError:  # pragma: no cover - other platforms rely on the grace period alone

    def _unacknowledged(fd: int) -> int:
        return 0


class _VirtualSelector(selectors.BaseSelector):
    """Delegates to the default selector; a wait for a timer that no I/O interrupts advances the loop's clock."""

    def __init__(self, loop: VirtualTimeLoop, grace: float) -> None:
        self._inner = selectors.DefaultSelector()
        self._loop = loop
        self._grace = grace
        self._quiet = False  # the last wait jumped and no I/O happened since

    def register(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.register(fileobj, events, data)

    def unregister(self, fileobj: Any) -> selectors.SelectorKey:
        return self._inner.unregister(fileobj)

    def modify(self, fileobj: Any, events: int, data: Any = None) -> selectors.SelectorKey:
        return self._inner.modify(fileobj, events, data)

    def get_map(self) -> Mapping[Any, selectors.SelectorKey]:
        return self._inner.get_map()

    def close(self) -> None:
        self._inner.close()

    def select(self, timeout: float | None = None) -> list[tuple[selectors.SelectorKey, int]]:
        if timeout is None or timeout <= 0:
            events = self._inner.select(timeout)  # ready work, or no timer at all: only I/O can wake us
            self._quiet = self._quiet and not events
            return events
        started = time.monotonic()
        grace = min(timeout, QUIET_GRACE if self._quiet else self._grace)
        events = self._inner.select(grace)
        while not events and self._in_flight() and time.monotonic() - started < _IN_FLIGHT_LIMIT:
            events = self._inner.select(min(timeout, self._grace))
        if events:
            self._quiet = False
            return events
        waited = time.monotonic() - started
        if waited < timeout:
            self._loop.advance(timeout - waited + _EPSILON)
            self._quiet = True
        return []

    def _in_flight(self) -> bool:
        """A socket that still has bytes on their way to a peer, or is waiting to become writable (connecting)."""
        for key in list(self._inner.get_map().values()):
            if key.events & selectors.EVENT_WRITE or _unacknowledged(key.fd) > 0:
                return True
        return False


class VirtualTimeLoop(asyncio.SelectorEventLoop):
    """A selector event loop on a clock that skips idle waits (see the module docstring)."""

    def __init__(self, *, grace: float = DEFAULT_GRACE) -> None:
        self._offset = 0.0
        super().__init__(_VirtualSelector(self, grace))

    def time(self) -> float:
        return time.monotonic() + self._offset

    def advance(self, seconds: float) -> None:
        """Move the clock `seconds` ahead (what an idle wait does by itself)."""
        self._offset += seconds

    @property
    def skipped(self) -> float:
        """Seconds of waiting skipped so far."""
        return self._offset


def run_virtual(main: Coroutine[Any, Any, T], *, grace: float = DEFAULT_GRACE) -> T:
    """`asyncio.run(main)` on a VirtualTimeLoop."""
    if sys.platform == "win32":  # pragma: no cover - the proactor loop has no selector to wrap
        raise RuntimeError("virtual time needs a selector event loop")
    with asyncio.Runner(loop_factory=lambda: VirtualTimeLoop(grace=grace)) as runner:
        return runner.run(main)
