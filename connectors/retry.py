"""One retry policy for every transport: bounded attempts, exponential backoff with full jitter, and the
partner's ``Retry-After`` honoured when it gives one (429, 503). Only retryable errors are retried."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import Any

from tenacity import RetryCallState, Retrying, retry_if_exception, stop_after_attempt, wait_random_exponential

from connectors.errors import is_retryable


@dataclass(frozen=True)
class RetryPolicy:
    """``attempts`` in all (1 = no retry); waits drawn from [0, min(maximum, initial·2ⁿ)] seconds; a partner's
    Retry-After is waited for up to ``max_retry_after`` seconds (a longer one fails the retry at once)."""

    attempts: int = 5
    initial: float = 0.5
    maximum: float = 30.0
    max_retry_after: float = 300.0

    @classmethod
    def from_extras(cls, extras: Mapping[str, Any]) -> RetryPolicy:
        defaults = cls()
        return cls(
            attempts=max(1, int(extras.get("retries", defaults.attempts - 1)) + 1),
            initial=float(extras.get("backoff_initial", defaults.initial)),
            maximum=float(extras.get("backoff_max", defaults.maximum)),
            max_retry_after=float(extras.get("max_retry_after", defaults.max_retry_after)),
        )


class _BackoffOrRetryAfter:
    """Jittered exponential backoff, or the partner's Retry-After when that is longer."""

    def __init__(self, policy: RetryPolicy) -> None:
        self.policy = policy
        self.backoff = wait_random_exponential(multiplier=policy.initial, max=policy.maximum)

    def __call__(self, state: RetryCallState) -> float:
        wait = self.backoff(state)
        error = state.outcome.exception() if state.outcome else None
        retry_after = getattr(error, "retry_after", None)
        if retry_after is not None:
            wait = max(wait, min(retry_after, self.policy.max_retry_after))
        return wait


def _retry_allowed(policy: RetryPolicy) -> Callable[[BaseException], bool]:
    def allowed(error: BaseException) -> bool:
        retry_after = getattr(error, "retry_after", None)
        return is_retryable(error) and (retry_after is None or retry_after <= policy.max_retry_after)

    return allowed


def retrying(
    policy: RetryPolicy, log: logging.Logger, action: str, sleep: Callable[[float], None] = time.sleep
) -> Retrying:
    """A tenacity ``Retrying`` for ``action`` (a short description for the log, e.g. ``POST /v1/packages``).
    The last error is re-raised as it is."""

    def before_sleep(state: RetryCallState) -> None:
        error = state.outcome.exception() if state.outcome else None
        log.warning(
            "%s failed (attempt %d of %d): %s; retrying in %.2f s",
            action,
            state.attempt_number,
            policy.attempts,
            error,
            state.next_action.sleep if state.next_action else 0.0,
        )

    return Retrying(
        stop=stop_after_attempt(policy.attempts),
        wait=_BackoffOrRetryAfter(policy),
        retry=retry_if_exception(_retry_allowed(policy)),
        sleep=sleep,
        before_sleep=before_sleep,
        reraise=True,
    )
