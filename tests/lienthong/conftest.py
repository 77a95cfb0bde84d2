from tests.exchange.conftest import *  # noqa: F403 - the contract's fixtures: test PKIs, signers, exchange-ready databases
