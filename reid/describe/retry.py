"""Retries for endpoint calls: exponential backoff with full jitter on 429, 5xx, timeouts; honours Retry-After."""

from __future__ import annotations

import email.utils
import json
import logging
import random
import time
from collections.abc import Callable
from dataclasses import dataclass
from typing import TypeVar

import openai

log = logging.getLogger(__name__)
T = TypeVar("T")
RETRYABLE_STATUS = frozenset({408, 409, 429})


@dataclass(frozen=True)
class RetryPolicy:
    """At most ``max_retries`` retries after the first try; delays from ``base_s`` doubling up to ``max_s``."""

    max_retries: int = 3
    base_s: float = 0.5
    max_s: float = 30.0


def is_retryable(exc: BaseException) -> bool:
    """True for rate limits, server errors, timeouts, dropped connections and unparsable response bodies."""
    if isinstance(exc, openai.APIStatusError):
        return exc.status_code in RETRYABLE_STATUS or exc.status_code >= 500
    return isinstance(exc, (openai.APIConnectionError, openai.APIResponseValidationError, json.JSONDecodeError))


def retry_after_s(exc: BaseException) -> float | None:
    """Seconds asked by ``Retry-After`` (seconds or an HTTP date) or ``retry-after-ms``, if any."""
    response = getattr(exc, "response", None)
    headers = getattr(response, "headers", None)
    if headers is None:
        return None
    if headers.get("retry-after-ms"):
        try:
            return max(0.0, float(headers["retry-after-ms"]) / 1000.0)
        except ValueError:
            pass
    value = headers.get("retry-after")
    if not value:
        return None
    try:
        return max(0.0, float(value))
    except ValueError:
        parsed = email.utils.parsedate_to_datetime(value) if value else None
        return None if parsed is None else max(0.0, parsed.timestamp() - time.time())


def backoff_s(retry: int, policy: RetryPolicy, asked_s: float | None, rng: random.Random) -> float:
    """Delay before retry number ``retry`` (0-based): ``U(0, min(max_s, base_s * 2**retry))``, at least ``asked_s``."""
    jittered = rng.uniform(0.0, min(policy.max_s, policy.base_s * (2.0 ** retry)))
    return jittered if asked_s is None else max(asked_s, jittered)


def call_with_retries(call: Callable[[], T], policy: RetryPolicy, what: str,
                      sleep: Callable[[float], None] = time.sleep, rng: random.Random | None = None) -> T:
    """Run ``call``; on a retryable error wait and try again, at most ``policy.max_retries`` times.

    Non-retryable errors and the last retryable one propagate. ``what`` names the call in log lines.
    """
    rng = rng or random.Random()
    for retry in range(policy.max_retries + 1):
        try:
            return call()
        except Exception as exc:
            if not is_retryable(exc) or retry == policy.max_retries:
                raise
            delay = backoff_s(retry, policy, retry_after_s(exc), rng)
            log.info("%s: %s; retry %d/%d in %.2fs", what, type(exc).__name__, retry + 1, policy.max_retries,
                     delay)
            sleep(delay)
    raise AssertionError("unreachable")
