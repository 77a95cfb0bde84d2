"""The land partner: SFTP. A pure-Python server (asyncssh) for the sandbox; the tests also run the same land
flows against OpenSSH's ``sshd`` serving the same folder layout, watched by the same ``InboxWatcher``.

The folder a client sees::

    inbox/                      packages are delivered here (as .zip, uploaded under a hidden name, then renamed)
    receipts/<package name>/    receipt.json and receipt.json.p7s, for each package taken from the inbox
    outbox/                     packages the land registry publishes for the population database
    acknowledgements/<package name>/   the population database's receipt.json and receipt.json.p7s for a
                                # package of the outbox (the folder built under a hidden name, then renamed)

The watcher takes only final names from the inbox (never hidden ``.name.partial`` uploads), hands each package
to the intake, publishes the receipt folder atomically (built aside, then renamed), and moves the package to
``processed/`` (or ``refused/`` when it is not a package at all) outside the client's view. It takes each
acknowledgement folder likewise: the receipt is verified against the published package and kept once
(``PackageIntake.take_receipt``), and the folder moves to ``acknowledged/`` (or ``refused-receipts/`` when it
does not verify) outside the client's view; a receipt sent again is taken again, and kept once.
"""

from __future__ import annotations

import asyncio
import logging
import shutil
import tempfile
import threading
from pathlib import Path
from typing import Any

import asyncssh

from exchange.receipt import RECEIPT, SIGNATURE
from partners.base import RECORDED_AT, Partner, agreement_of, inbound_dataset
from partners.faults import Fault, FaultPlan
from partners.intake import IntakeRefused, PackageIntake, PartnerKeys, ReceiptRefused, outbox_package
from partners.store import PersonRow

log = logging.getLogger("lienthong.partners")
OFFICE = "Văn phòng Đăng ký đất đai (sandbox)"
FOLDERS = ("inbox", "receipts", "outbox", "acknowledgements")


class InboxWatcher:
    """Polls ``<root>/inbox`` for delivered packages and answers each with a receipt folder."""

    def __init__(self, root: Path, intake: PackageIntake, work: Path, interval: float = 0.1) -> None:
        self.root, self.intake, self.work, self.interval = root, intake, work, interval
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None

    def start(self) -> None:
        if self._thread is None:
            self._stop.clear()
            self._thread = threading.Thread(target=self._run, name="land-inbox", daemon=True)
            self._thread.start()

    def stop(self) -> None:
        if self._thread is not None:
            self._stop.set()
            self._thread.join(timeout=10)
            self._thread = None

    def _run(self) -> None:
        while not self._stop.wait(self.interval):
            self.process_once()

    def process_once(self) -> int:
        """Process every package in the inbox and every acknowledgement now; returns how many."""
        packages = sorted(p for p in (self.root / "inbox").glob("*.zip") if not p.name.startswith("."))
        for package in packages:
            try:
                self._process(package)
            except Exception:  # noqa: BLE001 - one bad file must not stop the watcher
                log.exception("land: could not process %s", package.name)
        acknowledgements = sorted(p for p in (self.root / "acknowledgements").iterdir()
                                  if p.is_dir() and not p.name.startswith("."))  # fmt: skip
        for folder in acknowledgements:
            try:
                self._take_receipt(folder)
            except Exception:  # noqa: BLE001 - one bad folder must not stop the watcher
                log.exception("land: could not take the receipt in %s", folder.name)
        return len(packages) + len(acknowledgements)

    def _process(self, package: Path) -> None:
        name = package.name.removesuffix(".zip")
        try:
            result = self.intake.receive(package)
        except IntakeRefused as error:
            log.warning("land: %s refused: %s", package.name, error)
            self._move(package, "refused")
            return
        staging = Path(tempfile.mkdtemp(dir=self.root / "receipts", prefix=".receipt-"))
        (staging / "receipt.json.p7s").write_bytes(result.signature)
        (staging / "receipt.json").write_bytes(result.receipt)
        target = self.root / "receipts" / name
        if target.exists():
            shutil.rmtree(target)
        staging.rename(target)
        self._move(package, "processed")

    def _take_receipt(self, folder: Path) -> None:
        package = outbox_package(self.root / "outbox", f"{folder.name}.zip")
        outcome = "refused-receipts"
        if package is None:
            log.warning("land: a receipt for %s, which is not in the outbox", folder.name)
        else:
            try:
                receipt, signature = (folder / RECEIPT).read_bytes(), (folder / SIGNATURE).read_bytes()
                self.intake.take_receipt(package, receipt, signature)
                outcome = "acknowledged"
            except (OSError, ReceiptRefused) as error:
                log.warning("land: the receipt for %s is refused: %s", folder.name, error)
        target = self.work / outcome / folder.name
        target.parent.mkdir(parents=True, exist_ok=True)
        if target.exists():
            shutil.rmtree(target)
        folder.rename(target)

    def _move(self, package: Path, folder: str) -> None:
        target = self.work / folder
        target.mkdir(parents=True, exist_ok=True)
        package.replace(target / package.name)


class _LandSftpServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server confined to the land folder, with faults: ``disconnect`` closes the connection
    once ``after_bytes`` of a file went through (operation ``upload`` or ``download``); ``latency`` slows
    each request on a file."""

    def __init__(self, channel, root: Path, faults: FaultPlan) -> None:
        super().__init__(channel, chroot=str(root).encode())
        self.faults = faults
        self._armed: dict[int, Fault] = {}
        self._moved: dict[int, int] = {}

    def open(self, path: bytes, pflags: int, attrs):
        handle = super().open(path, pflags, attrs)
        operation = "upload" if pflags & asyncssh.FXF_WRITE else "download"
        fault = self.faults.take(operation, kinds=("disconnect", "latency"))
        if fault is not None:
            self._armed[id(handle)] = fault
        return handle

    async def write(self, file_obj, offset: int, data: bytes) -> int:
        await self._maybe_fail(file_obj, len(data))
        return super().write(file_obj, offset, data)

    async def read(self, file_obj, offset: int, size: int) -> bytes:
        await self._maybe_fail(file_obj, size)
        return super().read(file_obj, offset, size)

    async def _maybe_fail(self, file_obj, size: int) -> None:
        """Count the bytes of the file that went through; past ``after_bytes``, close the connection (after
        what was already answered has been sent) and fail this request."""
        fault = self._armed.get(id(file_obj))
        if fault is None:
            return
        if fault.kind == "latency":
            await asyncio.sleep(fault.seconds)
            return
        self._moved[id(file_obj)] = moved = self._moved.get(id(file_obj), 0) + size
        if moved > fault.after_bytes:
            del self._armed[id(file_obj)]
            log.warning("land: fault injection drops the SFTP connection after %d bytes", moved - size)
            self.connection.close()
            raise asyncssh.SFTPConnectionLost("fault injection: connection dropped")

    def close(self, file_obj) -> None:
        self._armed.pop(id(file_obj), None)
        self._moved.pop(id(file_obj), None)
        super().close(file_obj)


class _LandSshServer(asyncssh.SSHServer):
    """Public-key authentication only, for the one user the land office gave access to."""

    def __init__(self, user: str, authorized: list[asyncssh.SSHKey], connections: set) -> None:
        self.user, self.authorized, self.connections = user, authorized, connections
        self.connection = None

    def connection_made(self, connection) -> None:
        self.connection = connection
        self.connections.add(connection)

    def connection_lost(self, exc) -> None:
        self.connections.discard(self.connection)

    def begin_auth(self, username: str) -> bool:
        return True

    def public_key_auth_supported(self) -> bool:
        return True

    def validate_public_key(self, username: str, key: asyncssh.SSHKey) -> bool:
        wanted = key.export_public_key("openssh").split()[:2]
        return username == self.user and any(k.export_public_key("openssh").split()[:2] == wanted
                                             for k in self.authorized)  # fmt: skip


class LandPartner(Partner):
    transport = "sftp"

    def __init__(self, keys: PartnerKeys, state_dir: Path, *, user: str, authorized_keys: list[str]) -> None:
        super().__init__(keys, state_dir)
        self.user = user
        self.authorized = [asyncssh.import_public_key(line) for line in authorized_keys]
        self.host_key = _host_key(state_dir / "ssh_host_ed25519_key")
        self.watcher = InboxWatcher(self.root, self.intake, state_dir / "done")
        self.port = 0
        self._loop: asyncio.AbstractEventLoop | None = None
        self._thread: threading.Thread | None = None
        self._acceptor = None
        self._connections: set = set()

    @property
    def root(self) -> Path:
        return self.state_dir / "sftp"

    @property
    def outbox(self) -> Path:
        return self.root / "outbox"

    def publish(self, agreement_name: str) -> Path:
        """The registry's owners as an XML batch per ``schemas/xsd/land-owners.v1.xsd`` (what land offices publish),
        as the next package of the named agreement's inbound feed."""
        dataset = inbound_dataset(agreement_of(self.name, agreement_name))
        people = self.store.all_people()
        batch = {"office": OFFICE, "createdAt": RECORDED_AT, "count": len(people)}
        rows = (owner_row(person) for person in people)
        return self.intake.publish_outbox(self.outbox, agreement_name, dataset, rows, suffix=".xml", batch=batch)

    @property
    def host_key_line(self) -> str:
        return self.host_key.export_public_key("openssh").decode("ascii").strip()

    def start(self) -> None:
        if self._thread is not None:
            return
        loop = asyncio.new_event_loop()
        thread = threading.Thread(target=loop.run_forever, name=f"partner-{self.name}", daemon=True)
        thread.start()
        self._loop, self._thread = loop, thread
        self._acceptor = asyncio.run_coroutine_threadsafe(self._listen(), loop).result(timeout=30)
        self.port = self._acceptor.get_port()
        self.watcher.start()

    async def _listen(self):
        return await asyncssh.listen(
            "127.0.0.1",
            self.port,
            reuse_address=True,
            server_host_keys=[self.host_key],
            server_factory=lambda: _LandSshServer(self.user, self.authorized, self._connections),
            sftp_factory=lambda channel: _LandSftpServer(channel, self.root, self.faults),
            allow_scp=False,
            x11_forwarding=False,
            agent_forwarding=False,
        )

    async def _close(self) -> None:
        self._acceptor.close()
        for connection in list(self._connections):
            connection.abort()
        await self._acceptor.wait_closed()

    def stop(self) -> None:
        self.watcher.stop()
        if self._loop is None or self._thread is None:
            return
        asyncio.run_coroutine_threadsafe(self._close(), self._loop).result(timeout=30)
        self._loop.call_soon_threadsafe(self._loop.stop)
        self._thread.join(timeout=10)
        self._loop.close()
        self._loop = self._thread = self._acceptor = None

    def endpoint(self) -> dict[str, Any]:
        return {
            "transport": "sftp",
            "host": "127.0.0.1",
            "port": self.port,
            "user": self.user,
            "host_key": self.host_key_line,
            "host_key_fingerprint": self.host_key.get_fingerprint("sha256"),
            "remote_folder": "/",
            "inbox": "inbox",
            "receipts": "receipts",
            "outbox": "outbox",
            "acknowledgements": "acknowledgements",
        }


def owner_row(person: PersonRow) -> dict[str, Any]:
    """A registry record as an owner of the land batch XSD: the certificate, its parcel, the holder, the
    registry's own status (active, transferred or cancelled)."""
    details = person.details
    return {
        "certificate_serial": details["certificate_serial"],
        "commune_code": details["commune_code"],
        "map_sheet": details["map_sheet"],
        "parcel_number": details["parcel_number"],
        "area_square_metres": details.get("area_square_metres"),
        "personal_id": person.personal_id,
        "full_name": person.full_name,
        "date_of_birth": person.date_of_birth,
        "status": person.status,
    }


def _host_key(path: Path) -> asyncssh.SSHKey:
    """The server's host key, made once and kept: clients pin it."""
    if path.exists():
        return asyncssh.read_private_key(str(path))
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    path.chmod(0o600)
    return key
