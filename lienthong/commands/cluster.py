"""``lienthong cluster``: the production topology (docker-compose.yml's components, Celery workers on hosts of
their own) started natively on this machine, and taken down (``lienthong.cluster``)."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lienthong.commands.common import say

cluster_app = typer.Typer(help="The production topology on this machine: network namespaces as hosts (root only).",
                          no_args_is_help=True)  # fmt: skip
RootOption = Annotated[Path, typer.Option("--root", help="Where the cluster keeps its state. Default: var/cluster.")]


def _root(root: Path | None) -> Path:
    from lienthong.settings import var_dir

    return root or var_dir() / "cluster"


@cluster_app.command("up")
def up(
    root: RootOption = None,
    workers: Annotated[int, typer.Option(min=1, max=9, help="Celery workers, each on a host of its own.")] = 2,
    citizens: Annotated[int, typer.Option(min=100, help="The population generated on the first start.")] = 100_000,
) -> None:
    """Start PostgreSQL, Redis, the object store, Airflow's components, the workers and the partners."""
    from lienthong.cluster import CONTROL, host_address, up

    cluster = up(_root(root), workers, citizens)
    say(f"cluster up under {cluster.root}: Airflow at http://{host_address(CONTROL)}:8080 (admin's password in "
        f"{cluster.root / 'cluster.env'}), logs in {cluster.logs}; 'lienthong cluster down' stops it")  # fmt: skip


@cluster_app.command("down")
def down(root: RootOption = None) -> None:
    """Stop everything the cluster started and remove its namespaces (its state stays under --root)."""
    from lienthong.cluster import down

    down(_root(root))
    say("cluster down")
