"""The ``lienthong`` command line (typer + rich): one module per command group under ``lienthong.commands``,
what they share in ``lienthong.commands.common``."""

from __future__ import annotations

import typer

from lienthong.commands import demo, disclosures
from lienthong.commands.agreements import agreements_app
from lienthong.commands.changes import changes_app
from lienthong.commands.cluster import cluster_app
from lienthong.commands.db import db_app
from lienthong.commands.ledger import ledger_app
from lienthong.commands.package import package_app
from lienthong.commands.partners import partners_app
from lienthong.commands.pki import pki_app
from lienthong.commands.population import population_app
from lienthong.commands.quality import quality_app
from lienthong.commands.quarantine import quarantine_app
from lienthong.commands.receipt import receipt_app
from lienthong.commands.reconcile import reconcile_app
from lienthong.commands.retention import retention_app
from population.log_masking import install_log_masking

install_log_masking()  # every log line of the command, the partners it serves and the demo: personal IDs masked

app = typer.Typer(
    help="Liên thông: keeps the National Population Database in sync with partner registries.",
    no_args_is_help=True,
    pretty_exceptions_show_locals=False,
)
app.add_typer(db_app, name="db")
app.add_typer(population_app, name="population")
app.add_typer(changes_app, name="changes")
app.command("demo")(demo.demo)
app.command("airflow")(demo.airflow)
app.add_typer(pki_app, name="pki")
app.add_typer(package_app, name="package")
app.add_typer(receipt_app, name="receipt")
app.add_typer(ledger_app, name="ledger")
app.add_typer(quality_app, name="quality")
app.add_typer(quarantine_app, name="quarantine")
app.add_typer(reconcile_app, name="reconcile")
app.add_typer(partners_app, name="partners")
app.add_typer(agreements_app, name="agreements")
app.add_typer(retention_app, name="retention")
app.add_typer(cluster_app, name="cluster")
app.command("disclosures")(disclosures.disclosures)

if __name__ == "__main__":
    app()
