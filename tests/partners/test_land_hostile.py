"""The land SFTP server against a hostile client: the stock OpenSSH ``sftp -b`` batch client tries to leave the
land folder (``..``, absolute paths, links planted on disk, the symlink swap), to write where it may not, to upload
without bound; and poison packages and receipt folders are set aside once, with one line, no traceback.

Each case asserts that the input is refused by name (the server's log line names the rule), that nothing is stored
or left behind, that the server still serves a valid request, and that no personal data reaches the messages."""

from __future__ import annotations

import json
import logging
import os
import shutil
import sqlite3
import subprocess
import zipfile
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from exchange.package import PackageBuilder, zip_package
from exchange.pki import ENCRYPTION, load_certificate
from exchange.receipt import Receipt, verify_receipt
from partners import land as land_module
from partners.intake import PartnerKeys
from partners.land import LandPartner, Writable
from partners.openssh import write_key
from tests.partners.fixtures import PASSWORD, RECORDS, SCHEMA, ZippedPackage

PERSONAL_IDS = [record["personal_id"] for record in RECORDS]
USER = "population"


@dataclass
class Land:
    partner: LandPartner
    client_key: Path
    known_hosts: Path

    @property
    def root(self) -> Path:
        return self.partner.root

    @property
    def state(self) -> Path:
        return self.partner.state_dir

    @property
    def done(self) -> Path:
        return self.state / "done"


@pytest.fixture(scope="module")
def land(tmp_path_factory, sandbox_pki) -> Land:
    """A land partner of its own (what these tests do to it stays here), its watcher driven by the tests
    (``process_once``) so that they count what it takes; a client key as OpenSSH's ``sftp`` reads it."""
    land = started_land(tmp_path_factory.mktemp("hostile-land"), sandbox_pki)
    yield land
    land.partner.close()


def started_land(directory: Path, sandbox_pki) -> Land:
    client_key = directory / "client_ed25519"
    public_key = write_key(client_key).export_public_key("openssh").decode()
    keys = PartnerKeys.load(sandbox_pki, "land", PASSWORD)
    partner = LandPartner(keys, directory / "state", user=USER, authorized_keys=[public_key])
    partner.start()
    partner.watcher.stop()
    known_hosts = directory / "known_hosts"
    known_hosts.write_text(f"[127.0.0.1]:{partner.port} {partner.host_key_line}\n")
    return Land(partner, client_key, known_hosts)


@pytest.fixture(autouse=True)
def emptied(land):
    """Each test starts from the folders as a new partner has them."""
    yield
    for folder in [land.root / name for name in land_module.FOLDERS] + [land.done]:
        for entry in folder.iterdir() if folder.is_dir() else []:
            remove(entry)
    for entry in land.root.iterdir():
        if entry.name not in land_module.FOLDERS:
            remove(entry)


def remove(path: Path) -> None:
    """A file, a link (not what it points to) or a folder and what it holds."""
    if path.is_dir() and not path.is_symlink():
        shutil.rmtree(path)
    else:
        path.unlink()


@pytest.fixture
def land_package(tmp_path, exchange_engine, population_signer, sandbox_pki) -> ZippedPackage:
    """A package of the land agreement's outbound feed, as the population database sends it (a feed new for each
    test: sequence 1)."""
    out = tmp_path / "packages"
    out.mkdir()
    records = [{field: record[field] for field in ("personal_id", "full_name", "date_of_birth")} for record in RECORDS]
    encrypt_for = load_certificate(sandbox_pki.certificate("land", ENCRYPTION))
    with PackageBuilder(out, agreement="land-owners", recipient="land", schema=SCHEMA, signer=population_signer,
                        encrypt_for=encrypt_for) as builder:  # fmt: skip
        builder.add_records("citizens.csv", records)
        built = builder.seal(exchange_engine)
    return ZippedPackage(zip_package(built.path), built.manifest, built.manifest_sha256)


def sftp(land: Land, cwd: Path, *commands: str) -> subprocess.CompletedProcess:
    """Run a batch with the stock OpenSSH client (which stops at the first failing command not marked ``-``)."""
    batch = cwd / "batch"
    batch.write_text("\n".join(commands) + "\n")
    options = ["-F", "/dev/null", "-o", "BatchMode=yes", "-o", "IdentitiesOnly=yes", "-o", "IdentityAgent=none",
               "-o", f"UserKnownHostsFile={land.known_hosts}", "-o", "GlobalKnownHostsFile=/dev/null",
               "-o", "StrictHostKeyChecking=yes"]  # fmt: skip
    command = ["sftp", "-b", str(batch), *options, "-i", str(land.client_key), "-P", str(land.partner.port)]
    return subprocess.run([*command, f"{USER}@127.0.0.1"], cwd=cwd, capture_output=True, text=True, timeout=60)


def tree(top: Path) -> set[tuple[str, int, int]]:
    """Every entry under ``top`` (links not followed): path, type and size; the store's database files aside."""
    found = set()
    for directory, folders, files in os.walk(top):
        for name in folders + files:
            path = Path(directory) / name
            if not name.startswith("registry.db"):
                status = path.lstat()
                found.add((str(path.relative_to(top)), status.st_mode >> 12, status.st_size))
    return found


def assert_clean(text: str, land: Land) -> None:
    """No personal data, no key material, no traceback."""
    host_key = (land.state / "ssh_host_ed25519_key").read_text().splitlines()[1]
    assert not any(personal_id in text for personal_id in PERSONAL_IDS)
    assert host_key not in text and "Traceback" not in text


def assert_still_serving(land: Land, cwd: Path) -> None:
    listing = sftp(land, cwd, "ls -1 inbox")
    assert listing.returncode == 0, listing.stderr


# -- the client stays in its folder and writes only where it may ------------------------------------------------


def link(path: Path, target: str | Path) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.symlink_to(target)


def published(land: Land) -> None:
    (land.root / "outbox" / "published.zip").write_bytes(b"a package the land office published")


def swapped(land: Land) -> None:
    """The symlink swap's end state, as if made by other means: d is the root, up is d's parent."""
    link(land.root / "acknowledgements" / "d", "..")
    link(land.root / "acknowledgements" / "up", "d/..")


PLANTED: dict[str, Callable[[Land], None]] = {
    "nothing": lambda land: None,
    "a published package": published,
    "a link to the state folder": lambda land: link(land.root / "inbox" / "escape", land.state),
    "a relative link up": lambda land: link(land.root / "acknowledgements" / "up", "../.."),
    "a link to the host key": lambda land: link(land.root / "inbox" / "key.bin", "../../ssh_host_ed25519_key"),
    "the swapped links": swapped,
    "an acknowledgement folder": lambda land: (land.root / "acknowledgements" / "pkg").mkdir(),
    "a receipt folder": lambda land: (land.root / "receipts" / "pkg").mkdir(),
}

CASES = [  # planted, the batch's command, the rule the server names (None: no such path in the client's folder)
    ("nothing", "get ../ssh_host_ed25519_key stolen", None),
    ("nothing", "get /../../etc/hostname stolen", None),
    ("nothing", "put upload.bin ../planted.zip", "writable"),
    ("nothing", "put upload.bin /../../planted.zip", "writable"),
    ("nothing", "put upload.bin outbox/planted.zip", "writable"),
    ("nothing", "mkdir planted", "writable"),
    ("nothing", "mkdir inbox/d", "writable"),
    ("nothing", "rmdir inbox", "writable"),
    ("a receipt folder", "put upload.bin receipts/pkg/receipt.json", "writable"),
    ("a receipt folder", "rename receipts/pkg receipts/other", "writable"),
    ("a published package", "rm outbox/published.zip", "writable"),
    ("a published package", "rename outbox/published.zip inbox/published.zip", "writable"),
    ("a published package", "chmod 4755 outbox/published.zip", "attributes"),
    ("a published package", "ln outbox/published.zip inbox/copy.zip", "links"),
    ("nothing", "symlink / inbox/root", "links"),
    ("nothing", "put upload.bin 'inbox/a\tb.zip'", "name"),
    ("a link to the state folder", "get inbox/escape/ssh_host_ed25519_key stolen", "confinement"),
    ("a link to the state folder", "ls inbox/escape", "confinement"),
    ("a link to the state folder", "put upload.bin inbox/escape/planted.zip", "confinement"),
    ("a relative link up", "get acknowledgements/up/ssh_host_ed25519_key stolen", "confinement"),
    ("a link to the host key", "get inbox/key.bin stolen", "confinement"),
    ("the swapped links", "get acknowledgements/up/ssh_host_ed25519_key stolen", "confinement"),
    ("the swapped links", "put upload.bin acknowledgements/up/planted.txt", "confinement"),
    ("nothing", "put big.bin inbox/.big.zip.partial", "file_size"),
    ("an acknowledgement folder", "put big.bin acknowledgements/pkg/receipt.json", "file_size"),
]


@pytest.mark.parametrize(("planted", "command", "rule"), CASES, ids=[f"{c[0]}: {c[1]}" for c in CASES])
def test_a_client_cannot_read_or_write_outside_where_it_may(land, tmp_path, caplog, monkeypatch, planted, command,
                                                            rule):  # fmt: skip
    # smaller bounds than the real ones, so that an upload past them stays small
    monkeypatch.setitem(land_module.WRITABLE, "inbox", Writable(4096, 1))
    monkeypatch.setitem(land_module.WRITABLE, "acknowledgements", Writable(4096, 2))
    PLANTED[planted](land)
    (tmp_path / "upload.bin").write_bytes(b"not much")
    (tmp_path / "big.bin").write_bytes(os.urandom(5000))
    before, packages = tree(land.state), land.partner.store.package_count()
    caplog.set_level(logging.INFO)

    result = sftp(land, tmp_path, command)

    assert result.returncode != 0
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("land: refused")]
    if rule is None:
        assert "not found" in result.stderr
    else:
        assert refusals and all(f": {rule}: " in message for message in refusals)
        assert all("\n" not in message and "\t" not in message for message in refusals)
    assert tree(land.state) == before and land.partner.store.package_count() == packages
    assert sorted(p.name for p in tmp_path.iterdir()) == ["batch", "big.bin", "upload.bin"]  # nothing fetched
    assert_clean(caplog.text + result.stdout + result.stderr, land)
    assert_still_serving(land, tmp_path)


SWAP = [  # the sequence: a directory, a link to its parent through it, the directory replaced by a link
    "mkdir {folder}/d",
    "symlink d/.. {folder}/up",
    "rmdir {folder}/d",
    "symlink .. {folder}/d",
    "get {folder}/up/ssh_host_ed25519_key stolen",
    "put upload.bin {folder}/up/planted.txt",
]


@pytest.mark.parametrize("folder", ["acknowledgements", "inbox"])
def test_the_symlink_swap_reads_and_writes_nothing_outside_the_folder(land, tmp_path, caplog, folder):
    (tmp_path / "upload.bin").write_bytes(b"next to the registry database")
    before = tree(land.state)
    caplog.set_level(logging.INFO)

    result = sftp(land, tmp_path, *(f"-{step.format(folder=folder)}" for step in SWAP))

    assert not (tmp_path / "stolen").exists() and not (land.state / "planted.txt").exists()
    refusals = [r.getMessage() for r in caplog.records if r.getMessage().startswith("land: refused")]
    assert sum(": links: " in message for message in refusals) == 2
    assert tree(land.state) == before
    assert_clean(caplog.text + result.stdout + result.stderr, land)
    assert_still_serving(land, tmp_path)


def test_the_parent_of_the_folder_is_the_folder(land, tmp_path):
    result = sftp(land, tmp_path, "ls -1a ..", "ls -1a /")
    assert result.returncode == 0
    parent, root = ([line.rsplit("/", 1)[-1] for line in listing.splitlines()[1:]]
                    for listing in result.stdout.split("sftp> ")[1:])  # fmt: skip
    assert parent == root and set(root) >= set(land_module.FOLDERS)
    assert "ssh_host_ed25519_key" not in result.stdout and "registry.db" not in result.stdout


# -- poison packages and receipt folders: set aside once, one line, no traceback --------------------------------


def zip_of(path: Path, members: dict[str, bytes]) -> Path:
    with zipfile.ZipFile(path, "w") as archive:
        for name, data in members.items():
            archive.writestr(name, data)
    return path


def changed_payload(package: Path, target: Path, change: Callable[[bytes], bytes]) -> Path:
    """The package with its payload file's bytes changed (and its zip checksum made again)."""
    with zipfile.ZipFile(package) as archive:
        members = {name: archive.read(name) for name in archive.namelist()}
    payload = next(name for name in members if name.startswith("data/"))
    return zip_of(target, members | {payload: change(members[payload])})


def broken_checksum(package: Path, target: Path) -> Path:
    """The package with one byte of its stored payload flipped, its zip checksum left as it was."""
    data = bytearray(package.read_bytes())
    with zipfile.ZipFile(package) as archive:
        info = next(i for i in archive.infolist() if i.filename.startswith("data/"))
    start = info.header_offset + 30 + len(info.filename.encode()) + len(info.extra)
    data[start + info.compress_size // 2] ^= 0xFF
    target.write_bytes(bytes(data))
    return target


def counted(monkeypatch, intake, fail: Exception | None = None) -> list[Path]:
    """The packages the intake is handed (``fail``: what it raises instead of receiving them)."""
    handed: list[Path] = []
    receive = intake.receive

    def counting(path: Path):
        handed.append(path)
        if fail is not None:
            raise fail
        return receive(path)

    monkeypatch.setattr(intake, "receive", counting)
    return handed


NOT_PACKAGES = {
    "junk": lambda land, tmp: (tmp / "junk").write_bytes(b"no zip in here " * 10),
    "no manifest": lambda land, tmp: zip_of(tmp / "junk", {"data/x.csv": b"a,b\n"}),
    "a manifest nested 50,000 deep": lambda land, tmp: zip_of(tmp / "junk", {"manifest.json": b"[" * 50_000}),
}


@pytest.mark.parametrize("kind", NOT_PACKAGES)
def test_an_upload_that_is_not_a_package_is_set_aside_once_with_one_line(land, tmp_path, caplog, monkeypatch, kind):
    NOT_PACKAGES[kind](land, tmp_path)
    handed, packages = counted(monkeypatch, land.partner.intake), land.partner.store.package_count()
    caplog.set_level(logging.INFO)
    upload = sftp(land, tmp_path, "put junk inbox/.junk.zip.partial", "rename inbox/.junk.zip.partial inbox/junk.zip")
    assert upload.returncode == 0, upload.stderr

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    assert_set_aside_once(land, caplog, handed, "junk.zip", packages)


def test_a_name_that_would_forge_a_log_line_is_set_aside_on_one_line(land, caplog, monkeypatch):
    """A name the server refuses, placed by other means (a folder another server serves)."""
    name = "junk\nland: accepted package x.zip"
    (land.root / "inbox" / name).write_bytes(b"no zip in here")
    handed, packages = counted(monkeypatch, land.partner.intake), land.partner.store.package_count()
    caplog.set_level(logging.INFO)

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    assert_set_aside_once(land, caplog, handed, name, packages)
    assert all("\n" not in record.getMessage() for record in caplog.records)


@pytest.mark.parametrize("kind", ["a folder", "a link to the host key"])
def test_a_folder_or_a_link_named_like_a_package_is_set_aside_unread(land, caplog, monkeypatch, kind):
    planted = land.root / "inbox" / "planted.zip"
    if kind == "a folder":
        planted.mkdir()
        (planted / "manifest.json").write_bytes(b"{}")
    else:
        planted.symlink_to(land.state / "ssh_host_ed25519_key")
    key = (land.state / "ssh_host_ed25519_key").read_bytes()
    handed, packages = counted(monkeypatch, land.partner.intake), land.partner.store.package_count()
    caplog.set_level(logging.INFO)

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    assert handed == []  # never read as a package
    assert_set_aside_once(land, caplog, handed, "planted.zip", packages, handed_once=False)
    assert (land.state / "ssh_host_ed25519_key").read_bytes() == key


def test_a_package_the_intake_breaks_on_is_set_aside_once_with_a_rejected_receipt_without_its_message(
    land, tmp_path, caplog, monkeypatch, land_package, trust
):
    """A failure no check names (a fault in the intake itself: caused here by a raising intake) is the partner's,
    but the sender is told: a signed rejected receipt with only the kind of failure, and it may send again."""
    package = land_package
    handed = counted(monkeypatch, land.partner.intake, RuntimeError(f"stuck on {PERSONAL_IDS[0]}\nforged line"))
    packages = land.partner.store.package_count()
    caplog.set_level(logging.INFO)
    (land.root / "inbox" / package.path.name).write_bytes(package.path.read_bytes())

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    folder = land.root / "receipts" / package.path.name.removesuffix(".zip")
    verify_receipt(folder, trust, package.manifest, package.manifest_sha256)
    receipt = Receipt.from_bytes((folder / "receipt.json").read_bytes())
    assert receipt.status == "rejected" and receipt.record_count == 0
    assert receipt.errors == ("intake: the partner failed on this package (RuntimeError); nothing was stored",)
    lines = [r for r in caplog.records if repr(package.path.name) in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "RuntimeError" in lines[0].getMessage()
    assert [p.name for p in (land.done / "refused").iterdir()] == [package.path.name]
    assert len(handed) == 1 and land.partner.store.package_count() == packages
    assert_clean(caplog.text, land)


STORE_FAULTS = {"ENOSPC": OSError(28, "No space left on device"),
                "store full": sqlite3.OperationalError("database or disk is full")}  # fmt: skip


@pytest.mark.parametrize("fault", STORE_FAULTS.values(), ids=STORE_FAULTS.keys())
def test_a_package_the_partner_cannot_store_now_waits_and_is_stored_once_when_it_can(
    tmp_path, sandbox_pki, caplog, monkeypatch, land_package, trust, fault
):
    """A fault of the partner's own refuses nothing: the package stays out of the client's reach, said once, and
    each pass tries it again until it is stored (the fault raised here by the intake, twice). A partner of its own:
    this one stores the feed's first package. A real full disk: the fault matrix (tests/feeds)."""
    package, land = land_package, started_land(tmp_path / "own", sandbox_pki)
    try:
        receive, calls = land.partner.intake.receive, []

        def failing_twice(path: Path):
            calls.append(path)
            if len(calls) <= 2:
                raise fault
            return receive(path)

        monkeypatch.setattr(land.partner.intake, "receive", failing_twice)
        packages = land.partner.store.package_count()
        caplog.set_level(logging.INFO)
        (land.root / "inbox" / package.path.name).write_bytes(package.path.read_bytes())

        for _ in range(2):
            land.partner.watcher.process_once()
            assert not (land.root / "receipts" / package.path.name.removesuffix(".zip")).exists()
            assert [p.name for p in (land.done / land_module.TAKEN).iterdir()] == [package.path.name]
        land.partner.watcher.process_once()

        folder = land.root / "receipts" / package.path.name.removesuffix(".zip")
        assert verify_receipt(folder, trust, package.manifest, package.manifest_sha256).receipt.status == "accepted"
        assert land.partner.store.package_count() == packages + 1 and len(calls) == 3
        assert [p.name for p in (land.done / "processed").iterdir()] == [package.path.name]
        waits = [r for r in caplog.records if "waits" in r.getMessage()]
        assert len(waits) == 1 and type(fault).__name__ in waits[0].getMessage()
    finally:
        land.partner.close()


def test_a_package_with_a_broken_zip_checksum_is_answered_or_set_aside_once(land, tmp_path, caplog, monkeypatch,
                                                                             land_package):  # fmt: skip
    package = land_package
    broken = broken_checksum(package.path, tmp_path / package.path.name)
    handed, packages = counted(monkeypatch, land.partner.intake), land.partner.store.package_count()
    caplog.set_level(logging.INFO)
    (land.root / "inbox" / broken.name).write_bytes(broken.read_bytes())

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    name = broken.name.removesuffix(".zip")
    assert len(handed) == 1 and land.partner.store.package_count() == packages
    if (land.root / "receipts" / name).exists():  # the intake named the check
        assert json.loads((land.root / "receipts" / name / "receipt.json").read_bytes())["status"] == "rejected"
    else:
        assert_set_aside_once(land, caplog, handed, broken.name, packages)
    assert_clean(caplog.text, land)


def test_a_package_whose_payload_was_changed_gets_a_signed_rejected_receipt(land, tmp_path, caplog, monkeypatch,
                                                                            land_package, trust):  # fmt: skip
    package = land_package
    changed = changed_payload(
        package.path, tmp_path / package.path.name, lambda data: data[:-1] + bytes([~data[-1] & 255])
    )
    handed, packages = counted(monkeypatch, land.partner.intake), land.partner.store.package_count()
    caplog.set_level(logging.INFO)
    (land.root / "inbox" / changed.name).write_bytes(changed.read_bytes())

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    folder = land.root / "receipts" / changed.name.removesuffix(".zip")
    verify_receipt(folder, trust, package.manifest, package.manifest_sha256)
    receipt = Receipt.from_bytes((folder / "receipt.json").read_bytes())
    assert receipt.status == "rejected" and receipt.errors[0].startswith("file_hash: ")
    assert len(handed) == 1 and land.partner.store.package_count() == packages
    assert [p.name for p in (land.done / "processed").iterdir()] == [changed.name]
    assert_clean(caplog.text, land)


def assert_set_aside_once(
    land: Land, caplog, handed: list[Path], name: str, packages: int, handed_once: bool = True
) -> None:
    """Set aside into refused/ once, with one line that names it, no receipt, nothing stored, never retried."""
    lines = [r for r in caplog.records if r.name == "lienthong.partners" and repr(name) in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None
    assert [p.name for p in (land.done / "refused").iterdir()] == [name]
    assert not any((land.root / "inbox").iterdir()) and not any((land.done / land_module.TAKEN).iterdir())
    assert not (land.root / "receipts" / name.removesuffix(".zip")).exists()
    assert len(handed) == (1 if handed_once else 0) and land.partner.store.package_count() == packages
    assert "\n" not in lines[0].getMessage()
    assert_clean(caplog.text, land)


RECEIPT_FOLDERS = {
    "a file, not a folder": lambda folder: folder.write_bytes(b"{}"),
    "no package of that name": lambda folder: (folder.mkdir(), (folder / "receipt.json").write_bytes(b"{}")),
    "an oversized receipt": lambda folder: (folder.mkdir(), (folder / "receipt.json").write_bytes(b" " * (17 << 20))),
    "a receipt that is a link to the host key": lambda folder: (
        folder.mkdir(), (folder / "receipt.json").symlink_to(folder.parents[2] / "ssh_host_ed25519_key")),
}  # fmt: skip


@pytest.mark.parametrize("kind", RECEIPT_FOLDERS)
def test_a_receipt_folder_that_cannot_be_taken_is_set_aside_once_with_one_line(land, caplog, monkeypatch, kind):
    name = "land-owners-land-inbound-000001"
    if kind != "no package of that name":
        (land.root / "outbox" / f"{name}.zip").write_bytes(b"published")
    folder = land.root / "acknowledgements" / name
    RECEIPT_FOLDERS[kind](folder)
    taken = counted_receipts(monkeypatch, land.partner.intake)
    caplog.set_level(logging.INFO)

    land.partner.watcher.process_once()
    land.partner.watcher.process_once()

    lines = [r for r in caplog.records if repr(name) in r.getMessage()]
    assert len(lines) == 1 and lines[0].exc_info is None and "refused" in lines[0].getMessage()
    assert taken == [] and land.partner.store.acknowledgements() == []
    assert not any((land.root / "acknowledgements").iterdir())
    assert [p.name for p in (land.done / "refused-receipts").iterdir()] == [name]
    assert_clean(caplog.text, land)


def counted_receipts(monkeypatch, intake) -> list[bytes]:
    taken: list[bytes] = []
    monkeypatch.setattr(intake, "take_receipt", lambda package, receipt, signature: taken.append(receipt))
    return taken


# -- and a valid delivery still works ---------------------------------------------------------------------------


def test_a_package_delivered_by_the_stock_client_is_answered_with_an_accepted_receipt(land, tmp_path, land_package,
                                                                                    trust):  # fmt: skip
    package, packages = land_package, land.partner.store.package_count()
    name = package.path.name
    (tmp_path / name).write_bytes(package.path.read_bytes())
    upload = sftp(land, tmp_path, f"put {name} inbox/.{name}.partial", f"rename inbox/.{name}.partial inbox/{name}")
    assert upload.returncode == 0, upload.stderr
    land.partner.watcher.process_once()

    stem = name.removesuffix(".zip")
    fetched = sftp(land, tmp_path, f"lcd {tmp_path}", "lmkdir receipt", "lcd receipt",
                   f"get receipts/{stem}/receipt.json", f"get receipts/{stem}/receipt.json.p7s")  # fmt: skip
    assert fetched.returncode == 0, fetched.stderr
    verify_receipt(tmp_path / "receipt", trust, package.manifest, package.manifest_sha256)
    assert Receipt.from_bytes((tmp_path / "receipt" / "receipt.json").read_bytes()).status == "accepted"
    assert land.partner.store.package_count() == packages + 1
    assert (land.done / "processed" / name).stat().st_mode & 0o7777 == land_module.FILE_MODE
