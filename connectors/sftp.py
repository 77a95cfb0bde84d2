"""SFTP partners (land): paramiko with key authentication and a pinned host key.

- The server's host key must be the one pinned in the connection (``host_key``, an OpenSSH public key line);
  paramiko's ``RejectPolicy`` refuses an unknown key and a changed one alike (``HostKeyRejected``).
- Every remote path is taken inside the folder agreed with the partner (``remote_folder``): absolute paths,
  ``..`` and links that lead outside it are refused (``PathOutsideFolder``).
- Uploads go to a hidden temporary name beside the target, are checked for size, then ``posix_rename``d into
  place: the partner never sees a partial file under its final name.
- Downloads go to ``<target>.partial`` and resume from where a broken connection left them.
- Connection failures are retried with backoff, reconnecting; authentication and host-key failures are not.

Throughput: large SSH windows and packets, pipelined write requests of ``write_chunk`` bytes, and read-ahead
(``prefetch``) for downloads; see ``bench/bench_sftp.py``.
"""

from __future__ import annotations

import base64
import binascii
import contextlib
import fnmatch
import io
import posixpath
import stat
from collections.abc import Callable
from dataclasses import dataclass
from functools import cached_property
from pathlib import Path, PurePosixPath
from typing import TYPE_CHECKING, Any, TypeVar

import paramiko

from connectors.base import RECEIPT, RECEIPT_SIGNATURE, DeliveredReceipt, PartnerHook, package_file_name
from connectors.errors import (
    AuthenticationFailed,
    ConfigurationError,
    HostKeyRejected,
    PathOutsideFolder,
    TransferIncomplete,
    TransientError,
)
from connectors.retry import retrying

if TYPE_CHECKING:
    from airflow.sdk import XComArg

    from connectors.sensors import SftpReceiptSensor

T = TypeVar("T")
DEFAULT_WINDOW = 64 * 1024 * 1024
DEFAULT_PACKET = 256 * 1024
DEFAULT_WRITE_CHUNK = 255 * 1024  # under OpenSSH's 256 KiB SFTP message limit
READ_BLOCK = 64 * 1024  # small enough that a broken download keeps nearly all it received
PARTIAL_PREFIX, PARTIAL_SUFFIX = ".", ".partial"
KEY_TYPES = (paramiko.Ed25519Key, paramiko.ECDSAKey, paramiko.RSAKey)
# AES-GCM first: one AEAD pass per packet instead of AES-CTR plus HMAC (about 20% more throughput here);
# paramiko's other ciphers stay as fallbacks for servers without it.
PREFERRED_CIPHERS = ("aes128-gcm@openssh.com", "aes256-gcm@openssh.com")


@dataclass(frozen=True)
class RemoteFile:
    path: str  # relative to the agreed folder
    size: int
    modified: int


def parse_public_key(line: str) -> paramiko.PKey:
    """An OpenSSH public key line (``ssh-ed25519 AAAA… [comment]``), as pinned in a connection."""
    parts = line.split()
    if len(parts) < 2:
        raise ConfigurationError("host_key must be an OpenSSH public key line: '<type> <base64> [comment]'")
    try:
        return paramiko.PKey.from_type_string(parts[0], base64.b64decode(parts[1], validate=True))
    except (binascii.Error, paramiko.SSHException, ValueError) as error:
        raise ConfigurationError(f"host_key is not a usable public key ({error})") from None


def host_key_entry(host: str, port: int) -> str:
    """How known_hosts names a host: ``[host]:port`` unless the port is 22."""
    return host if port == 22 else f"[{host}]:{port}"


def _transport(sock, window: int, packet: int) -> paramiko.Transport:
    transport = paramiko.Transport(sock, default_window_size=window, default_max_packet_size=packet)
    options = transport.get_security_options()
    options.ciphers = PREFERRED_CIPHERS + tuple(c for c in options.ciphers if c not in PREFERRED_CIPHERS)
    return transport


def _inline_key(text: str, passphrase: str | None) -> paramiko.PKey:
    for key_type in KEY_TYPES:
        try:
            return key_type.from_private_key(io.StringIO(text), password=passphrase)
        except paramiko.PasswordRequiredException:
            raise
        except paramiko.SSHException:
            continue
    raise paramiko.SSHException("not a private key paramiko can read")


class SftpHook(PartnerHook):
    """An SFTP partner. Connection: host, port, login; the private key in ``private_key_file`` (or
    ``private_key``), its passphrase in the password field; ``host_key`` and ``remote_folder`` required."""

    conn_name_attr = "sftp_conn_id"
    default_conn_name = "lienthong_sftp_default"
    conn_type = "lienthong_sftp"
    hook_name = "Liên thông SFTP partner"
    receipt_comes_later = True  # the partner takes the package from its inbox and writes the receipt when done

    def __init__(self, sftp_conn_id: str | None = None, **kwargs: Any) -> None:
        super().__init__(sftp_conn_id, **kwargs)
        self._ssh: paramiko.SSHClient | None = None
        self._sftp: paramiko.SFTPClient | None = None

    # -- configuration ----------------------------------------------------------------------------------------

    @cached_property
    def folder(self) -> str:
        return posixpath.normpath("/" + self.extras.required("remote_folder").strip("/"))

    @cached_property
    def inbox(self) -> str:
        """The partner's inbox, relative to the agreed folder."""
        return self.extras.text("inbox", "inbox")

    @cached_property
    def port(self) -> int:
        return int(self.connection.port or 22)

    @cached_property
    def pinned_host_key(self) -> paramiko.PKey:
        return parse_public_key(self.extras.required("host_key"))

    @cached_property
    def private_key(self) -> paramiko.PKey:
        passphrase = self.connection.password or None
        key_file = self.extras.path("private_key_file")
        inline = self.extras.text("private_key")
        if key_file is None and inline is None:
            raise ConfigurationError(f"connection {self.conn_id!r} needs private_key_file or private_key")
        try:
            if key_file is not None:
                return paramiko.PKey.from_path(key_file, passphrase.encode("utf-8") if passphrase else None)
            return _inline_key(inline, passphrase)
        except paramiko.PasswordRequiredException:
            raise ConfigurationError(f"connection {self.conn_id!r}: the private key needs its passphrase") from None
        except (paramiko.SSHException, ValueError):
            raise ConfigurationError(
                f"connection {self.conn_id!r}: cannot load the private key (wrong passphrase?)"
            ) from None

    def remote_path(self, relative: str) -> str:
        """The absolute remote path of ``relative`` inside the agreed folder; refuses to leave it."""
        if "\0" in relative or "\\" in relative:
            raise PathOutsideFolder(f"{relative!r}: NUL and backslash are not allowed in remote paths")
        if PurePosixPath(relative).is_absolute():
            raise PathOutsideFolder(f"{relative!r}: remote paths are relative to the agreed folder")
        if ".." in PurePosixPath(relative).parts:
            raise PathOutsideFolder(f"{relative!r}: '..' is not allowed in remote paths")
        joined = posixpath.normpath(posixpath.join(self.folder, relative))
        if not self._inside(joined):
            raise PathOutsideFolder(f"{relative!r} is outside the agreed folder")
        return joined

    def _inside(self, path: str) -> bool:
        return self.folder == "/" or path == self.folder or path.startswith(self.folder + "/")

    def _relative(self, path: str) -> str:
        return posixpath.relpath(path, self.folder)

    # -- connection -----------------------------------------------------------------------------------------

    def get_conn(self) -> paramiko.SFTPClient:
        if self._sftp is None:
            self._sftp = self._connect()
        return self._sftp

    def _connect(self) -> paramiko.SFTPClient:
        conn = self.connection
        if not conn.host or not conn.login:
            raise ConfigurationError(f"connection {self.conn_id!r} needs host and login")
        ssh = paramiko.SSHClient()
        ssh.set_missing_host_key_policy(paramiko.RejectPolicy())
        pinned = self.pinned_host_key
        ssh.get_host_keys().add(host_key_entry(conn.host, self.port), pinned.get_name(), pinned)
        timeout = self.extras.number("connect_timeout", 15.0)
        window = int(self.extras.number("window_size", DEFAULT_WINDOW))
        packet = int(self.extras.number("max_packet_size", DEFAULT_PACKET))
        try:
            ssh.connect(
                conn.host,
                port=self.port,
                username=conn.login,
                pkey=self.private_key,
                look_for_keys=False,
                allow_agent=False,
                timeout=timeout,
                banner_timeout=timeout,
                auth_timeout=timeout,
                transport_factory=lambda sock, **_: _transport(sock, window, packet),
            )
            transport = ssh.get_transport()
            transport.set_keepalive(30)
            sftp = paramiko.SFTPClient.from_transport(transport, window_size=window, max_packet_size=packet)
            sftp.get_channel().settimeout(self.extras.number("timeout", 60.0))
        except paramiko.BadHostKeyException:
            ssh.close()
            raise HostKeyRejected(
                f"the host key of {conn.host}:{self.port} is not the pinned one: refusing to connect"
            ) from None
        except paramiko.AuthenticationException:
            ssh.close()
            raise AuthenticationFailed(f"{conn.host}:{self.port} refused the key of user {conn.login}") from None
        except paramiko.SSHException as error:
            ssh.close()
            if "not found in known_hosts" in str(error):
                raise HostKeyRejected(f"{conn.host}:{self.port} presented an unknown host key: refusing") from None
            raise TransientError(f"SSH to {conn.host}:{self.port} failed ({error})") from None
        except (OSError, EOFError) as error:
            ssh.close()
            problem = f"{type(error).__name__}: {error}"
            raise TransientError(f"cannot connect to {conn.host}:{self.port} ({problem})") from None
        self._ssh = ssh
        self.log.info("connected to %s:%d as %s", conn.host, self.port, conn.login)
        return sftp

    def close(self) -> None:
        """Close the connection; a connection that already broke is just dropped."""
        if self._sftp is not None:
            with contextlib.suppress(OSError, EOFError, paramiko.SSHException):
                self._sftp.close()
        if self._ssh is not None:
            self._ssh.close()
        self._sftp = self._ssh = None

    def _run(self, action: str, operation: Callable[[paramiko.SFTPClient], T]) -> T:
        """Run ``operation`` on a live connection under the retry policy; a broken connection is closed and
        opened again on the next attempt."""
        for attempt in retrying(self.retry_policy, self.log, action, self.sleep):
            with attempt:
                sftp = self.get_conn()
                try:
                    return operation(sftp)
                except (OSError, EOFError, paramiko.SSHException) as error:
                    if isinstance(error, PermissionError | FileNotFoundError) and self._alive():
                        raise
                    self.close()
                    raise TransientError(f"{action}: the connection broke ({type(error).__name__}: {error})") from None
        raise AssertionError("unreachable")

    def _alive(self) -> bool:
        transport = self._ssh.get_transport() if self._ssh else None
        return transport is not None and transport.is_active()

    # -- files ----------------------------------------------------------------------------------------------

    def _checked_parent(self, sftp: paramiko.SFTPClient, path: str) -> None:
        """The server's real path of the parent folder must be inside the agreed folder (no links out)."""
        parent = sftp.normalize(posixpath.dirname(path))
        if not self._inside(parent):
            raise PathOutsideFolder(f"{self._relative(path)!r} leads outside the agreed folder")

    def upload(self, local: Path, remote: str) -> RemoteFile:
        """Upload ``local`` to ``remote`` (relative to the agreed folder) under a temporary name, confirm the
        size, then rename it into place atomically."""
        final = self.remote_path(remote)
        directory, name = posixpath.split(final)
        temporary = posixpath.join(directory, f"{PARTIAL_PREFIX}{name}{PARTIAL_SUFFIX}")
        size = local.stat().st_size
        chunk = int(self.extras.number("write_chunk", DEFAULT_WRITE_CHUNK))

        def send(sftp: paramiko.SFTPClient) -> RemoteFile:
            self._checked_parent(sftp, final)
            with local.open("rb", buffering=0) as source, sftp.open(temporary, "wb") as target:
                target.MAX_REQUEST_SIZE = chunk
                target.set_pipelined(True)
                buffer = bytearray(4 * 1024 * 1024)
                view = memoryview(buffer)
                while n := source.readinto(buffer):
                    target.write(view[:n])
            sent = sftp.stat(temporary).st_size
            if sent != size:
                sftp.remove(temporary)
                raise TransferIncomplete(f"upload of {remote}: the server has {sent:,} of {size:,} bytes")
            sftp.posix_rename(temporary, final)
            try:
                placed = sftp.stat(final)
            except FileNotFoundError:  # the partner took it already (the land watcher moves a package out at once):
                return RemoteFile(self._relative(final), size, 0)  # renamed whole, its size checked before
            if placed.st_size != size:
                raise TransferIncomplete(f"upload of {remote}: {placed.st_size:,} bytes under the final name")
            return RemoteFile(self._relative(final), size, int(placed.st_mtime or 0))

        result = self._run(f"upload {remote}", send)
        self.log.info("uploaded %s (%s bytes)", remote, f"{size:,}")
        return result

    def download(self, remote: str, local: Path) -> int:
        """Download ``remote`` into ``local``: through ``local.partial``, resumed after a broken connection,
        size confirmed, then renamed into place. Returns the size."""
        source = self.remote_path(remote)
        partial = local.with_name(local.name + ".partial")
        partial.unlink(missing_ok=True)

        def fetch(sftp: paramiko.SFTPClient) -> int:
            self._checked_parent(sftp, source)
            size = sftp.stat(source).st_size
            offset = partial.stat().st_size if partial.exists() else 0
            if offset > size:
                partial.unlink()
                offset = 0
            with sftp.open(source, "rb") as remote_file, partial.open("ab") as target:
                remote_file.seek(offset)
                remote_file.prefetch(size)
                while offset < size:
                    block = remote_file.read(min(READ_BLOCK, size - offset))
                    if not block:
                        break
                    target.write(block)
                    offset += len(block)
            if offset != size:
                raise TransferIncomplete(f"download of {remote}: {offset:,} of {size:,} bytes")
            return size

        size = self._run(f"download {remote}", fetch)
        partial.replace(local)
        self.log.info("downloaded %s (%s bytes)", remote, f"{size:,}")
        return size

    def read_bytes(self, remote: str, limit: int = 16 * 1024 * 1024) -> bytes:
        """A small remote file's content (receipts, indexes); refuses files over ``limit`` bytes."""
        path = self.remote_path(remote)

        def read(sftp: paramiko.SFTPClient) -> bytes:
            self._checked_parent(sftp, path)
            with sftp.open(path, "rb") as handle:
                if handle.stat().st_size > limit:
                    raise TransferIncomplete(f"{remote} is over {limit:,} bytes")
                return handle.read()

        return self._run(f"read {remote}", read)

    def list(self, pattern: str = "*", folder: str = "") -> list[RemoteFile]:
        """Regular files in ``folder`` (inside the agreed folder) whose names match ``pattern``, sorted;
        hidden temporary uploads are never listed."""
        directory = self.remote_path(folder) if folder else self.folder

        def listing(sftp: paramiko.SFTPClient) -> list[RemoteFile]:
            if folder:
                self._checked_parent(sftp, posixpath.join(directory, "x"))
            return sorted(
                (
                    RemoteFile(self._relative(posixpath.join(directory, entry.filename)), entry.st_size, entry.st_mtime)
                    for entry in sftp.listdir_attr(directory)
                    if stat.S_ISREG(entry.st_mode or 0)
                    and not entry.filename.startswith(PARTIAL_PREFIX)
                    and fnmatch.fnmatchcase(entry.filename, pattern)
                ),
                key=lambda f: f.path,
            )

        return self._run(f"list {folder or '.'}", listing)

    def exists(self, remote: str) -> bool:
        path = self.remote_path(remote)

        def probe(sftp: paramiko.SFTPClient) -> bool:
            try:
                sftp.stat(path)
            except FileNotFoundError:
                return False
            return True

        return self._run(f"stat {remote}", probe)

    def remove(self, remote: str) -> None:
        path = self.remote_path(remote)
        self._run(f"remove {remote}", lambda sftp: sftp.remove(path))

    # -- what the exchange needs ---------------------------------------------------------------------------------

    def deliver_package(self, package_zip: Path, package_id: str | None = None) -> None:
        """Upload a zipped package into the partner's inbox (``inbox`` extra, default ``inbox``). The partner
        answers later (``fetch_receipt``); it reads the package id from the manifest and deduplicates by it."""
        self.upload(package_zip, posixpath.join(self.inbox, package_zip.name))

    def fetch_receipt(self, package_name: str) -> DeliveredReceipt | None:
        """The partner's signed receipt for a package (``receipts/<package name>/``), or None if not there yet."""
        folder = posixpath.join(self.extras.text("receipts", "receipts"), package_name)
        if not self.exists(posixpath.join(folder, RECEIPT_SIGNATURE)):
            return None
        return DeliveredReceipt(
            self.read_bytes(posixpath.join(folder, RECEIPT)), self.read_bytes(posixpath.join(folder, RECEIPT_SIGNATURE))
        )

    @classmethod
    def receipt_sensor(
        cls, *, task_id: str, conn_id: str, package_name: str | XComArg, **operator_args: Any
    ) -> SftpReceiptSensor:
        """``SftpReceiptSensor``: it looks in ``receipts/<package name>/``, deferred to ``SftpReceiptTrigger``."""
        from connectors.sensors import SftpReceiptSensor

        return SftpReceiptSensor(task_id=task_id, sftp_conn_id=conn_id, package_name=package_name, **operator_args)

    def outbox(self, pattern: str = "*.zip") -> list[RemoteFile]:
        """The packages the partner has published for us (``outbox`` extra, default ``outbox``)."""
        return self.list(pattern, self.extras.text("outbox", "outbox"))

    def outbox_packages(self) -> list[str]:
        """The names of the packages the partner has published for us, sorted."""
        return sorted(package_file_name(posixpath.basename(f.path)) for f in self.outbox())

    def download_package(self, name: str, target_dir: Path) -> Path:
        """Download a published package into ``target_dir`` (through a ``.partial`` file, resumed after a break)."""
        target = Path(target_dir) / package_file_name(name)
        target.parent.mkdir(parents=True, exist_ok=True)
        self.download(posixpath.join(self.extras.text("outbox", "outbox"), name), target)
        return target

    def send_receipt(self, name: str, receipt: DeliveredReceipt) -> None:
        """Answer a published package with our signed receipt: the folder ``acknowledgements/<package name>/``
        (``acknowledgements`` extra) with receipt.json and its signature, built under a hidden name and renamed
        into place, each file's size confirmed. The partner takes the folder away once it has kept the receipt;
        sending the same receipt while the folder is still there changes nothing, another one replaces it."""
        stem = package_file_name(name).removesuffix(".zip")
        folder = self.extras.text("acknowledgements", "acknowledgements")
        final = self.remote_path(posixpath.join(folder, stem))
        temporary = self.remote_path(posixpath.join(folder, f"{PARTIAL_PREFIX}{stem}{PARTIAL_SUFFIX}"))
        files = ((RECEIPT_SIGNATURE, receipt.signature), (RECEIPT, receipt.receipt))

        def send(sftp: paramiko.SFTPClient) -> None:
            self._checked_parent(sftp, final)
            if _folder_holds(sftp, final, files):
                return
            _remove_folder(sftp, temporary)  # what an interrupted attempt left
            sftp.mkdir(temporary)
            for file_name, data in files:
                path = posixpath.join(temporary, file_name)
                with sftp.open(path, "wb") as handle:
                    handle.write(data)
                if sftp.stat(path).st_size != len(data):
                    raise TransferIncomplete(f"receipt for {stem}: {file_name} arrived incomplete")
            _remove_folder(sftp, final)  # an earlier receipt the partner has not taken yet
            sftp.posix_rename(temporary, final)

        self._run(f"send receipt {stem}", send)
        self.log.info("sent the receipt for %s", stem)

    # -- Airflow ------------------------------------------------------------------------------------------------

    def test_connection(self) -> tuple[bool, str]:
        """Connect (host key and user key checked) and list the partner's inbox, where packages are delivered."""
        try:
            with self:
                files = self.list(folder=self.inbox)
        except Exception as error:  # noqa: BLE001 - the UI wants a message, not a traceback
            return False, f"{type(error).__name__}: {error}"
        return True, f"connected; {len(files)} file(s) in {posixpath.join(self.folder, self.inbox)}"


def _folder_holds(sftp: paramiko.SFTPClient, folder: str, files: tuple[tuple[str, bytes], ...]) -> bool:
    """Whether the remote folder holds exactly these files' contents already."""
    for name, data in files:
        try:
            with sftp.open(posixpath.join(folder, name), "rb") as handle:
                if handle.read(len(data) + 1) != data:
                    return False
        except FileNotFoundError:
            return False
    return True


def _remove_folder(sftp: paramiko.SFTPClient, folder: str) -> None:
    """Remove a remote folder of plain files, if it is there."""
    try:
        names = sftp.listdir(folder)
    except FileNotFoundError:
        return
    for name in names:
        sftp.remove(posixpath.join(folder, name))
    sftp.rmdir(folder)
