"""``lienthong demo`` and ``lienthong airflow``: the sandbox's partners with every exchange DAG, run once through
Airflow or served with its web UI. The demo's folder holds all of it: the population, ``pki/``, ``partners/`` and
``airflow/``."""

from __future__ import annotations

import os
from pathlib import Path

import typer

from lienthong import settings
from lienthong.commands.common import DbOption, VarOption, fail, key_password, population_engine, require_schema


def demo(var: VarOption = None, db: DbOption = None) -> None:
    """Start the four partners on loopback and run every exchange DAG through Airflow (make demo sets up the
    population and the PKI first); print what crossed, per partner."""
    from lienthong.demo import run_demo

    var = var or settings.var_dir()
    if not run_demo(var, _demo_setup(var, db)):
        fail("some DAG runs did not succeed (see above)")


def airflow(var: VarOption = None, db: DbOption = None) -> None:
    """Start the four partners on loopback and Airflow (web UI, scheduler, DAG processor, triggerer; on loopback
    only) with the exchange DAGs, their connections, pools and plugin, for the web UI (after make demo); Ctrl-C
    stops both."""
    from lienthong.demo import serve_airflow

    var = var or settings.var_dir()
    raise typer.Exit(code=serve_airflow(var, _demo_setup(var, db)))


def _demo_setup(var: Path, db: str | None) -> bytes:
    """Check that the population and the PKI are there; the key password."""
    from exchange.pki import PkiDirectory

    engine = population_engine(db)
    require_schema(engine)
    engine.dispose()
    if db:
        os.environ[settings.DB_ENV] = db
    if not PkiDirectory(var / "pki").root_ca.exists():
        fail(f"no PKI in {var / 'pki'}: run 'lienthong pki init' first")
    try:
        settings.disclosure_key()  # the feeds index every disclosure: refused now rather than in every DAG run
    except settings.DisclosureKeyMissing as error:
        fail(error)
    return key_password()
