"""The retry policy every transport shares, and which errors it retries."""

from __future__ import annotations

import logging

import pytest

from connectors.errors import (
    AuthenticationFailed,
    HttpStatusError,
    PermanentError,
    SoapFault,
    TransferIncomplete,
    TransientError,
)
from connectors.retry import RetryPolicy, retrying

log = logging.getLogger("test")


def run(policy: RetryPolicy, failures: list[Exception]) -> tuple[int, list[float]]:
    """Call something that fails with ``failures`` in turn, then succeeds; returns (calls, waits)."""
    waits: list[float] = []
    calls = 0
    for attempt in retrying(policy, log, "test", waits.append):
        with attempt:
            calls += 1
            if failures:
                raise failures.pop(0)
    return calls, waits


def test_transient_errors_are_retried_with_jittered_exponential_backoff():
    policy = RetryPolicy(attempts=5, initial=0.5, maximum=1.5)
    calls, waits = run(policy, [TransientError("x"), TransientError("x"), TransientError("x")])
    assert calls == 4 and len(waits) == 3 and all(0 <= w <= 1.5 for w in waits)


def test_retry_after_is_waited_for_at_least():
    calls, waits = run(RetryPolicy(initial=0.01), [HttpStatusError("busy", 429, retry_after=7)])
    assert calls == 2 and waits[0] >= 7


def test_a_retry_after_over_the_limit_is_not_waited_for():
    with pytest.raises(HttpStatusError):
        run(RetryPolicy(max_retry_after=10), [HttpStatusError("busy", 503, retry_after=11)])


@pytest.mark.parametrize("error", [AuthenticationFailed("no"), HttpStatusError("bad", 400), PermanentError("no"),
                                   SoapFault("bad", "soap:Client.Invalid"), ValueError("bug")])  # fmt: skip
def test_permanent_errors_are_raised_at_once(error):
    with pytest.raises(type(error)):
        run(RetryPolicy(), [error])


def test_attempts_are_bounded():
    with pytest.raises(TransferIncomplete):
        run(RetryPolicy(attempts=3, initial=0), [TransferIncomplete("x")] * 5)


def test_the_policy_comes_from_the_connection_extras():
    assert RetryPolicy.from_extras({"retries": "2", "backoff_initial": 0.1, "backoff_max": 3}) == RetryPolicy(
        attempts=3, initial=0.1, maximum=3.0, max_retry_after=300.0
    )
    assert RetryPolicy.from_extras({}).attempts == 5


@pytest.mark.parametrize(
    ("code", "retryable"),
    [("soap:Server.Busy", True), ("soap:Server.Unavailable", True), ("Server.Timeout", True),
     ("soap:Server", False), ("soap:Server.InternalError", False), ("soap:Client.Busy", False)],
)  # fmt: skip
def test_soap_faults_say_whether_a_retry_can_help(code, retryable):
    assert SoapFault("fault", code).retryable is retryable


@pytest.mark.parametrize(("status", "retryable"), [(500, True), (503, True), (429, True), (404, False), (409, False)])
def test_http_statuses_say_whether_a_retry_can_help(status, retryable):
    assert HttpStatusError("x", status).retryable is retryable
