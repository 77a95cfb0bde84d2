"""The fuzz harnesses' budget and their test PKI.

By default each harness tries ``DEFAULT_EXAMPLES`` inputs, so that the whole folder stays well under 30 s in CI;
``LIENTHONG_FUZZ_EXAMPLES`` asks for a longer run (``make fuzz``: 20,000 each).
"""

from __future__ import annotations

import os

import pytest
from hypothesis import HealthCheck, settings

from exchange.pki import PkiDirectory, init_pki
from tests.exchange.conftest import PASSWORD

# 300 inputs per harness: the whole folder then runs in ~10 s on one core.
DEFAULT_EXAMPLES = 300
EXAMPLES = int(os.environ.get("LIENTHONG_FUZZ_EXAMPLES") or DEFAULT_EXAMPLES)

# No deadline: a shared CI machine's pauses are not hangs. Every reader is bounded, so none should run long.
FUZZ = settings(
    max_examples=EXAMPLES,
    deadline=None,
    suppress_health_check=[HealthCheck.too_slow, HealthCheck.data_too_large, HealthCheck.function_scoped_fixture],
)


@pytest.fixture(scope="session")
def fuzz_pki(tmp_path_factory) -> PkiDirectory:
    return init_pki(tmp_path_factory.mktemp("fuzz-pki") / "pki", PASSWORD, rsa_bits=2048)
