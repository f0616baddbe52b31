"""Request limits of the search service: a fixed cap on a request body and a per-client token-bucket rate."""

from __future__ import annotations

import time
from collections import OrderedDict
from collections.abc import AsyncIterator, Callable, Mapping

MAX_BODY_BYTES = 64 * 1024
MAX_CLIENTS = 10_000  # buckets kept; the least recently seen client is forgotten beyond this (it starts full again)


class BodyTooLarge(Exception):
    """A request body over the cap (declared by Content-Length or found while reading)."""


async def read_capped(headers: Mapping[str, str], chunks: AsyncIterator[bytes], limit: int = MAX_BODY_BYTES) -> bytes:
    """The body of a request, or :class:`BodyTooLarge` as soon as it is known to exceed ``limit`` bytes: a declared
    length is refused before reading, a chunked body once the bytes read pass the cap."""
    declared = headers.get("content-length")
    if declared is not None and declared.strip().isdigit() and int(declared) > limit:
        raise BodyTooLarge(int(declared))
    parts, size = [], 0
    async for chunk in chunks:
        size += len(chunk)
        if size > limit:
            raise BodyTooLarge(size)
        parts.append(chunk)
    return b"".join(parts)


class RateLimiter:
    """A token bucket per client address: ``burst`` requests at once, refilled at ``rate`` per second."""

    def __init__(self, rate: float, burst: int, clock: Callable[[], float] = time.monotonic,
                 max_clients: int = MAX_CLIENTS) -> None:
        if rate <= 0 or burst < 1:
            raise ValueError(f"a rate limit needs rate > 0 and burst >= 1, got rate={rate}, burst={burst}")
        self.rate, self.burst, self.clock, self.max_clients = float(rate), int(burst), clock, max_clients
        self.buckets: OrderedDict[str, tuple[float, float]] = OrderedDict()  # client -> (tokens, when)

    def admit(self, client: str) -> float:
        """0.0 when ``client`` may go ahead (one token taken), else the seconds until it may."""
        now = self.clock()
        tokens, then = self.buckets.pop(client, (float(self.burst), now))
        tokens = min(float(self.burst), tokens + (now - then) * self.rate)
        wait = 0.0
        if tokens >= 1.0:
            tokens -= 1.0
        else:
            wait = (1.0 - tokens) / self.rate
        self.buckets[client] = (tokens, now)
        while len(self.buckets) > self.max_clients:
            self.buckets.popitem(last=False)
        return wait
