from tests.validation.conftest import db, population  # noqa: F401 - the quality commands run on a generated population
