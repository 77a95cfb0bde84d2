"""The feeds' fixtures: the contract's (test PKIs, signers, exchange-ready databases), and a day of life events."""

from datetime import date

import pytest

from population.db import session_factory
from population.generator import generate
from population.simulation import DaySimulation
from tests.exchange.conftest import *  # noqa: F403 - the contract's fixtures: test PKIs, signers, exchange-ready databases
from tests.exchange.conftest import reset_exchange_tables


@pytest.fixture
def day_of_events(engine):
    """A generated population and a day of life events, on each backend."""
    reset_exchange_tables(engine)
    generate(engine, 400, 17, 0.03)
    DaySimulation(session_factory(engine), 17, date(2026, 7, 2)).run(120)
    return engine
