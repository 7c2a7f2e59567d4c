"""Client event-loop lag: how late a short timer wakes. A saturated client inflates TTFT (vLLM #39963), so
every request records the worst lag seen while it was open, and is flagged when that passes a threshold."""

from __future__ import annotations

import asyncio
import contextlib
from bisect import bisect_left

from collectors.probe.client import now


class LagMonitor:
    def __init__(self, interval_s: float = 0.01) -> None:
        self.interval_s = interval_s
        self.times: list[float] = []  # when each sample was taken (perf_counter s)
        self.lags_ms: list[float] = []
        self._task: asyncio.Task[None] | None = None

    async def _run(self) -> None:
        while True:
            start = now()
            await asyncio.sleep(self.interval_s)
            woke = now()
            self.times.append(woke)
            self.lags_ms.append(max(0.0, (woke - start - self.interval_s) * 1000))

    def start(self) -> None:
        self._task = asyncio.create_task(self._run())

    async def stop(self) -> None:
        if self._task is not None:
            self._task.cancel()
            with contextlib.suppress(asyncio.CancelledError):
                await self._task

    def worst_between(self, start: float, end: float) -> float:
        """The largest lag of any sample whose timer ran within [start, end] (plus the one after end)."""
        first = bisect_left(self.times, start)
        last = bisect_left(self.times, end, lo=first) + 1
        return max(self.lags_ms[first:last], default=0.0)
