"""The fault plan: which request takes which fault, and how often."""

from __future__ import annotations

import pytest

from partners.faults import Fault, FaultPlan


def test_a_fault_spoils_as_many_matching_requests_as_it_says_then_is_gone():
    plan = FaultPlan().add(Fault("status", operation="pack*", times=2))
    assert plan.take("records") is None
    assert plan.take("packages").kind == "status"
    assert plan.take("packages").kind == "status"
    assert plan.take("packages") is None
    assert plan.fired["status:packages"] == 2 and plan.pending() == []


def test_requests_take_the_first_fault_that_applies_among_the_kinds_they_can_show():
    plan = FaultPlan().add(Fault("disconnect", operation="upload"), Fault("latency", seconds=1))
    assert plan.take("records", kinds=("latency", "status")).kind == "latency"
    assert plan.take("upload", kinds=("disconnect",)).kind == "disconnect"


def test_faults_are_checked_when_made():
    with pytest.raises(ValueError, match="unknown fault kind"):
        Fault("explode")
    with pytest.raises(ValueError, match="at least one"):
        Fault("status", times=0)
    with pytest.raises(ValueError, match="unknown fault fields"):
        Fault.from_dict({"kind": "status", "colour": "red"})
    assert Fault.from_dict({"kind": "status", "status": 429, "retry_after": 2}).retry_after == 2


def test_clear_forgets_pending_and_fired():
    plan = FaultPlan().add(Fault("reset", times=3))
    plan.take("packages")
    plan.clear()
    assert plan.pending() == [] and not plan.fired
