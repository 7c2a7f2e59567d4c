"""A transport that spreads requests over several small connection pools.

httpcore's pool re-examines every connection against every other one each time a request starts or ends
(`_assign_requests_to_connections` counts idle connections inside a loop over connections): quadratic in the
pool size. At 256 streams that was 11.5 s of a 16 s probe's CPU, and the probe reported the client's own
stalls as the endpoint's TTFT. Pools of at most `per_pool` connections keep each pass small; a request goes to
the pool with the fewest open responses.
"""

from __future__ import annotations

import math
from collections.abc import AsyncIterator, Callable
from typing import Any

import httpx


class _Released(httpx.AsyncByteStream):
    """A response body that tells its pool's counter when it is closed."""

    def __init__(self, stream: httpx.AsyncByteStream, release: Callable[[], None]) -> None:
        self._stream = stream
        self._release: Callable[[], None] | None = release

    async def __aiter__(self) -> AsyncIterator[bytes]:
        async for part in self._stream:
            yield part

    async def aclose(self) -> None:
        try:
            await self._stream.aclose()
        finally:
            if self._release is not None:
                self._release()
                self._release = None


class ShardedTransport(httpx.AsyncBaseTransport):
    def __init__(self, connections: int, per_pool: int = 16, **options: Any) -> None:
        shards = max(1, math.ceil(connections / per_pool))
        size = math.ceil(connections / shards)
        limits = httpx.Limits(max_connections=size, max_keepalive_connections=size)
        options.setdefault("verify", httpx.create_ssl_context())  # one CA load (~35 ms), not one per pool
        self.pools = [httpx.AsyncHTTPTransport(limits=limits, **options) for _ in range(shards)]
        self.open = [0] * shards

    async def handle_async_request(self, request: httpx.Request) -> httpx.Response:
        index = min(range(len(self.pools)), key=self.open.__getitem__)
        self.open[index] += 1

        def release() -> None:
            self.open[index] -= 1

        try:
            response = await self.pools[index].handle_async_request(request)
        except BaseException:
            release()
            raise
        assert isinstance(response.stream, httpx.AsyncByteStream)
        return httpx.Response(
            status_code=response.status_code,
            headers=response.headers,
            stream=_Released(response.stream, release),
            extensions=response.extensions,
        )

    async def aclose(self) -> None:
        for pool in self.pools:
            await pool.aclose()
