from tests.partners.fixtures import *  # noqa: F403 - the shared partner fixtures
