"""The land partner: SFTP. A pure-Python server (asyncssh) for the sandbox; the tests also run the same land
flows against OpenSSH's ``sshd`` serving the same folder layout, watched by the same ``InboxWatcher``.

The folder a client sees::

    inbox/                      packages are delivered here (as .zip, uploaded under a hidden name, then renamed)
    receipts/<package name>/    receipt.json and receipt.json.p7s, for each package taken from the inbox
    outbox/                     packages the land registry publishes for the population database
    acknowledgements/<package name>/   the population database's receipt.json and receipt.json.p7s for a
                                # package of the outbox (the folder built under a hidden name, then renamed)

The watcher takes only final names from the inbox (never hidden ``.name.partial`` uploads), moves each package out
of the client's reach before reading it, hands it to the intake, publishes the receipt folder atomically (built
aside, then renamed), and moves the package to ``processed/``, or once to ``refused/`` when it is not a package at
all or the intake broke on it (then with a rejected receipt, ``intake: …``, so the sender is not left waiting),
outside the client's view. A fault of the partner's own (a full disk, a failing store) refuses nothing: the package
stays taken and each pass tries it again. It takes each acknowledgement
folder likewise: the receipt is verified against the published package and kept once
(``PackageIntake.take_receipt``), and the folder moves to ``acknowledged/`` (or ``refused-receipts/`` when it
does not verify) outside the client's view; a receipt sent again is taken again, and kept once.
"""

from __future__ import annotations

import asyncio
import contextlib
import logging
import os
import re
import shutil
import stat
import tempfile
import threading
from dataclasses import dataclass
from pathlib import Path
from typing import Any, NoReturn

import asyncssh

from exchange.package import MAX_DOCUMENT_BYTES
from exchange.receipt import RECEIPT, SIGNATURE
from lienthong.settings import partners_host
from partners.base import RECORDED_AT, Partner, agreement_of, inbound_dataset
from partners.faults import Fault, FaultPlan
from partners.intake import IntakeRefused, IntakeResult, PackageIntake, PartnerKeys, ReceiptRefused, outbox_package
from partners.store import STORE_FAULTS, PersonRow

log = logging.getLogger("lienthong.partners")
OFFICE = "Văn phòng Đăng ký đất đai (sandbox)"
FOLDERS = ("inbox", "receipts", "outbox", "acknowledgements")
TAKEN = "taken"  # under the watcher's work folder: packages out of the client's reach while they are read
# The largest package the inbox takes: as the REST intake's (partners/rest.py). A 1M-record snapshot package is
# 133 MB (docs/BENCHMARKS.md), so this leaves 8x room while one client cannot fill the disk with one file.
MAX_PACKAGE_BYTES = 1 << 30
FILE_MODE, FOLDER_MODE = 0o600, 0o700
# what the server creates for a client, whatever modes it asks for
_CONTROL = re.compile(rb"[\x00-\x1f\x7f]")


@dataclass(frozen=True)
class Writable:
    """What a client may write in one of its folders: files of at most ``max_bytes``, at most ``depth`` names below
    the folder (1: files; 2: folders of files)."""

    max_bytes: int
    depth: int


# Every other place (the root, outbox/, receipts/<package>/) is read-only for clients.
WRITABLE = {
    "inbox": Writable(MAX_PACKAGE_BYTES, 1),  # packages, uploaded under a hidden name, then renamed
    "acknowledgements": Writable(MAX_DOCUMENT_BYTES, 2),  # <package>/receipt.json and its signature
    # files only, never the partner's receipt folders (a file in the way of one is replaced): the connector's tests
    # upload here as a scratch folder
    "receipts": Writable(MAX_DOCUMENT_BYTES, 1),
}


class InboxWatcher:
    """Polls ``<root>/inbox`` for delivered packages and answers each with a receipt folder."""

    def __init__(self, root: Path, intake: PackageIntake, work: Path, interval: float = 0.1) -> None:
        self.root, self.intake, self.work, self.interval = root, intake, work, interval
        for folder in FOLDERS:
            (root / folder).mkdir(parents=True, exist_ok=True)
        work.mkdir(parents=True, exist_ok=True)
        self._stop = threading.Event()
        self._thread: threading.Thread | None = None
        self._waiting: dict[str, str] = {}  # a taken package the partner cannot store now -> the fault, said once

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
        failing = None  # the last pass's failure, said once however many passes it lasts
        while not self._stop.wait(self.interval):
            try:
                self.process_once()
                failing = None
            except Exception as error:  # noqa: BLE001 - the next pass tries again; one line, no traceback
                if failing != (failing := type(error).__name__):
                    log.warning("land: a pass over the folders failed: %s", failing)

    def process_once(self) -> int:
        """Answer every package of the inbox and take every acknowledgement now; returns how many."""
        count = 0
        (self.work / TAKEN).mkdir(exist_ok=True)
        for package in sorted((self.work / TAKEN).iterdir()):  # taken by a pass that died half-way
            self._answer(package)
            count += 1
        for name in _names(self.root / "inbox", ".zip"):
            taken = self.work / TAKEN / name
            try:
                (self.root / "inbox" / name).replace(taken)  # out of the client's reach: what is verified is stored
            except FileNotFoundError:
                continue  # the client removed it meanwhile
            self._answer(taken)
            count += 1
        for name in _names(self.root / "acknowledgements"):
            self._take_receipt(self.root / "acknowledgements" / name)
            count += 1
        return count

    def _answer(self, package: Path) -> None:
        """Answer a taken package with its receipt folder; when there is no receipt to give (not a package at all,
        or the intake broke on it), set it aside into refused/ with one line: once, never retried."""
        name = package.name.removesuffix(".zip")
        try:
            if not stat.S_ISREG(package.lstat().st_mode):  # a folder or a link is not a package
                raise IntakeRefused("not an exchange package: not a file")
            self._publish(name, self.intake.receive(package))
        except IntakeRefused as error:
            log.warning("land: %r refused: %s", package.name, _printable(str(error)))
        except STORE_FAULTS as error:  # a full disk, a failing or locked store: the package is not at fault
            if self._waiting.get(package.name) != (kind := type(error).__name__):
                log.warning("land: %r waits: the partner cannot store it now (%s); tried again each pass",
                            package.name, kind)  # fmt: skip
                self._waiting[package.name] = kind
            return  # it stays taken: the next pass takes it first
        except Exception as error:  # noqa: BLE001 - its message may quote the package: only the kind of failure
            log.warning("land: %r set aside: the intake failed on it (%s)", package.name, type(error).__name__)
            if (rejected := self.intake.failed(package, error)) is not None:
                self._publish(name, rejected)  # the sender is told, not left waiting for a receipt
        else:
            self._waiting.pop(package.name, None)
            _move(package, self.work / "processed")
            return
        self._waiting.pop(package.name, None)
        _move(package, self.work / "refused")

    def _publish(self, name: str, result: IntakeResult) -> None:
        """The receipt folder ``receipts/<name>/``, built aside and renamed into place (replacing what is there)."""
        receipts = self.root / "receipts"
        staging = Path(tempfile.mkdtemp(dir=receipts, prefix=".receipt-"))
        try:
            (staging / SIGNATURE).write_bytes(result.signature)
            (staging / RECEIPT).write_bytes(result.receipt)
            _clear(receipts / name)
            staging.rename(receipts / name)
        except BaseException:
            shutil.rmtree(staging, ignore_errors=True)
            raise

    def _take_receipt(self, folder: Path) -> None:
        """Take one acknowledgement folder: the receipt verified against the published package and kept once; the
        folder moves out of the client's view, to acknowledged/, or with one line to refused-receipts/."""
        outcome = "refused-receipts"
        try:
            package = outbox_package(self.root / "outbox", f"{folder.name}.zip")
            if not stat.S_ISDIR(folder.lstat().st_mode):  # a file or a link is not a receipt folder
                raise ReceiptRefused("not a folder")
            if package is None:
                raise ReceiptRefused("no such package in the outbox")
            self.intake.take_receipt(package, _read_document(folder / RECEIPT), _read_document(folder / SIGNATURE))
            outcome = "acknowledged"
        except ReceiptRefused as error:
            log.warning("land: the receipt for %r is refused: %s", folder.name, _printable(str(error)))
        except Exception as error:  # noqa: BLE001 - its message may quote the receipt: only the kind of failure
            log.warning("land: the receipt for %r is set aside: taking it failed (%s)", folder.name,
                        type(error).__name__)  # fmt: skip
        _move(folder, self.work / outcome)


def _names(folder: Path, suffix: str = "") -> list[str]:
    """The final names in a client's folder (never hidden uploads), sorted."""
    with os.scandir(folder) as entries:
        return sorted(e.name for e in entries if not e.name.startswith(".") and e.name.endswith(suffix))


def _move(path: Path, folder: Path) -> None:
    """Move a file or folder into ``folder`` (out of the client's view), replacing one of its name."""
    folder.mkdir(parents=True, exist_ok=True)
    _clear(folder / path.name)
    path.rename(folder / path.name)


def _clear(path: Path) -> None:
    """Remove whatever is at ``path``: a folder and what it holds, a file, or a link (never what it points to)."""
    try:
        mode = path.lstat().st_mode
    except FileNotFoundError:
        return
    if stat.S_ISDIR(mode):
        shutil.rmtree(path)
    else:
        path.unlink()


def _read_document(path: Path) -> bytes:
    """A receipt or signature a client placed: a regular file, never read through a link or from a FIFO, of at most
    ``MAX_DOCUMENT_BYTES`` (whichever server wrote it, the OpenSSH one included)."""
    try:
        descriptor = os.open(path, os.O_RDONLY | os.O_NOFOLLOW | os.O_NONBLOCK)
    except OSError as error:
        raise ReceiptRefused(f"{path.name}: {error.strerror}") from None
    with os.fdopen(descriptor, "rb") as handle:
        if not stat.S_ISREG(os.fstat(descriptor).st_mode):
            raise ReceiptRefused(f"{path.name}: not a file")
        data = handle.read(MAX_DOCUMENT_BYTES + 1)
    if len(data) > MAX_DOCUMENT_BYTES:
        raise ReceiptRefused(f"{path.name}: more than {MAX_DOCUMENT_BYTES:,} bytes")
    return data


def _printable(text: str) -> str:
    """Text from outside on one log line: control characters escaped, so that a name cannot forge a line."""
    return "".join(c if c.isprintable() else repr(c)[1:-1] for c in text)


def _refuse(path: bytes, rule: str) -> NoReturn:
    """One line in the log (the path escaped), and the rule to the client."""
    log.warning("land: refused %r: %s", path, rule)
    raise asyncssh.SFTPPermissionDenied(rule)


class _LandSftpServer(asyncssh.SFTPServer):
    """asyncssh's SFTP server confined to the land folder on every operation, with faults.

    asyncssh checks a link only when it is made and follows any found later, so a link made inside and moved, or
    planted, leads out. Here every path goes through ``map_path``, which resolves its real path (each link followed)
    and refuses one outside the folder; clients cannot make links, so the path checked is the path used. Clients
    write only where ``WRITABLE`` says, files of a bounded size, and never set attributes.

    Faults: ``disconnect`` closes the connection once ``after_bytes`` of a file went through (operation ``upload`` or
    ``download``); ``latency`` slows each request on a file."""

    def __init__(self, channel, root: Path, faults: FaultPlan) -> None:
        super().__init__(channel, chroot=str(root).encode())
        self.root = os.path.realpath(os.fsencode(root))
        self.faults = faults
        self._armed: dict[int, Fault] = {}
        self._moved: dict[int, int] = {}
        self._uploads: dict[int, tuple[str, int]] = {}  # a file open for writing → its folder, its largest size
        self._oversized: set[int] = set()

    # -- confinement --------------------------------------------------------------------------------------------

    def map_path(self, path: bytes) -> bytes:
        """The local path of a client's path: every operation maps its paths here."""
        self._real_names(path)
        return super().map_path(path)

    def _real_names(self, path: bytes) -> tuple[str, ...]:
        """The names of the path's real location under the root, every link followed; refused when that leads outside
        the root, or when a name holds control characters."""
        if _CONTROL.search(path):
            _refuse(path, "name: control characters are refused in names")
        real = os.path.realpath(super().map_path(path))
        if real == self.root:
            return ()
        if not real.startswith(self.root + b"/"):
            _refuse(path, "confinement: the path leads outside the land folder")
        return tuple(os.fsdecode(real[len(self.root) + 1 :]).split("/"))

    def _writable(self, path: bytes, *, folder: bool = False) -> tuple[str, Writable]:
        """The client's folder the path writes in, and its rule; refused anywhere ``WRITABLE`` does not allow."""
        names = self._real_names(path)
        rule = WRITABLE.get(names[0]) if len(names) > 1 else None
        if rule is None or len(names) - 1 + folder > rule.depth:
            _refuse(path, "writable: clients write only files in inbox/ and receipts/, and acknowledgements/<package>/")
        return names[0], rule

    # -- operations that write ----------------------------------------------------------------------------------

    def open(self, path: bytes, pflags: int, attrs):
        writes = pflags & (asyncssh.FXF_WRITE | asyncssh.FXF_APPEND | asyncssh.FXF_CREAT | asyncssh.FXF_TRUNC)
        if writes:
            folder, rule = self._writable(path)
            attrs = asyncssh.SFTPAttrs(permissions=FILE_MODE)
        handle = super().open(path, pflags, attrs)
        if writes:
            self._uploads[id(handle)] = (folder, rule.max_bytes)
        operation = "upload" if pflags & asyncssh.FXF_WRITE else "download"
        fault = self.faults.take(operation, kinds=("disconnect", "latency"))
        if fault is not None:
            self._armed[id(handle)] = fault
        return handle

    async def write(self, file_obj, offset: int, data: bytes) -> int:
        await self._maybe_fail(file_obj, len(data))
        if id(file_obj) in self._uploads:
            self._bounded(file_obj, offset, len(data))
        return super().write(file_obj, offset, data)

    def _bounded(self, file_obj, offset: int, size: int) -> None:
        """Refuse a write past its folder's largest file; the file is removed (said once, for all the writes
        already on their way)."""
        if id(file_obj) in self._oversized:
            raise asyncssh.SFTPPermissionDenied("file_size: refused already")
        folder, max_bytes = self._uploads[id(file_obj)]
        end = (os.fstat(file_obj.fileno()).st_size if "a" in file_obj.mode else offset) + size
        if end > max_bytes:
            self._oversized.add(id(file_obj))
            with contextlib.suppress(OSError):
                if os.stat(file_obj.name).st_ino == os.fstat(file_obj.fileno()).st_ino:
                    os.remove(file_obj.name)
            _refuse(os.fsencode(file_obj.name), f"file_size: a file in {folder}/ may have at most {max_bytes:,} bytes")

    def mkdir(self, path: bytes, attrs) -> None:
        self._writable(path, folder=True)
        super().mkdir(path, asyncssh.SFTPAttrs(permissions=FOLDER_MODE))

    def rmdir(self, path: bytes) -> None:
        self._writable(path, folder=True)
        super().rmdir(path)

    def remove(self, path: bytes) -> None:
        self._writable(path)
        super().remove(path)

    def rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._within_a_folder(oldpath, newpath)
        super().rename(oldpath, newpath)

    def posix_rename(self, oldpath: bytes, newpath: bytes) -> None:
        self._within_a_folder(oldpath, newpath)
        super().posix_rename(oldpath, newpath)

    def _within_a_folder(self, oldpath: bytes, newpath: bytes) -> None:
        """A rename stays in the writable folder it starts in (whose size bound its file was written under); a folder
        moves only where folders may be written."""
        folder = stat.S_ISDIR(os.lstat(self.map_path(oldpath)).st_mode)
        if self._writable(oldpath, folder=folder)[0] != self._writable(newpath, folder=folder)[0]:
            _refuse(newpath, "writable: a file stays in the folder it was written to")

    def symlink(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        _refuse(newpath, "links: the land office serves no links")

    def link(self, oldpath: bytes, newpath: bytes) -> NoReturn:
        _refuse(newpath, "links: the land office serves no links")

    def setstat(self, path: bytes, attrs) -> NoReturn:
        _refuse(path, "attributes: the server sets modes, sizes and times")

    def lsetstat(self, path: bytes, attrs) -> NoReturn:
        _refuse(path, "attributes: the server sets modes, sizes and times")

    def fsetstat(self, file_obj, attrs) -> NoReturn:
        _refuse(os.fsencode(file_obj.name), "attributes: the server sets modes, sizes and times")

    # -- faults -------------------------------------------------------------------------------------------------

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
        for kept in (self._armed, self._moved, self._uploads):
            kept.pop(id(file_obj), None)
        self._oversized.discard(id(file_obj))
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
            partners_host(),
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
            "host": partners_host(),
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
