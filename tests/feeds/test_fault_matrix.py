"""The fault matrix (issue 15, item 4): each transport × each step of the outbound and inbound feeds × each fault,
caused for real (``tests.feeds.fault_matrix`` says how), recovered from as production does; in every cell each
record is held exactly once, the checkpoint or the inbound sequence is at the end and the ledger verifies with one
entry of each kind for the cell's package. ``docs/reliability.md`` prints the table; a test keeps it in step."""

from __future__ import annotations

from pathlib import Path

import paramiko
import pytest

from connectors.transport import partner_hook
from tests.feeds.fault_matrix import CELLS, Cell, CellRun, make_world, matrix_table
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env, partners, make_package
from tests.partners.fixtures import wait_for

DOC = Path(__file__).resolve().parents[2] / "docs" / "reliability.md"


@pytest.fixture(scope="session")
def matrix_world(tmp_path_factory, sandbox_pki):
    """One world for the test process's cells, which run in it one after another as days."""
    world = make_world(tmp_path_factory.mktemp("fault-matrix"), sandbox_pki)
    yield world
    world.close()


@pytest.mark.slow
@pytest.mark.parametrize("cell", CELLS, ids=lambda cell: cell.id)
def test_each_record_is_held_once_whatever_fails_where(cell: Cell, matrix_world, tmp_path, monkeypatch):
    for variable, value in matrix_world.env.items():
        monkeypatch.setenv(variable, value)
    try:
        CellRun(matrix_world, cell, tmp_path).run()
    finally:
        matrix_world.partners_up()


def test_the_matrix_has_at_least_30_cells_per_transport_and_the_doc_prints_it():
    for transport in ("rest", "soap", "sftp"):
        assert sum(cell.transport == transport for cell in CELLS) >= 30, transport
    assert len({cell.id for cell in CELLS}) == len(CELLS)
    printed = DOC.read_text(encoding="utf-8")
    assert matrix_table() in printed, "docs/reliability.md: print tests.feeds.fault_matrix.matrix_table() there"


def test_a_package_the_land_partner_takes_at_once_is_delivered(partners, make_package, monkeypatch):
    """Found by the matrix on a loaded machine: the land watcher moves a package out of the inbox as soon as its final
    name appears, and the upload's check of the final name after its rename then failed with a bare
    FileNotFoundError. The rename is atomic and the size was checked before it: the package is delivered."""
    land = partners.partners["land"]
    package = make_package("land")
    rename = paramiko.SFTPClient.posix_rename

    def rename_then_let_the_watcher_take_it(self, old, new):
        rename(self, old, new)
        wait_for(lambda: not (land.root / "inbox" / package.path.name).exists(), "the watcher to take the package")

    monkeypatch.setattr(paramiko.SFTPClient, "posix_rename", rename_then_let_the_watcher_take_it)
    with partner_hook("sftp", "lienthong_land") as hook:
        hook.deliver_package(package.path, package.manifest.package_id)
    wait_for(lambda: land.store.stored_package(package.manifest.package_id), "the package stored")
