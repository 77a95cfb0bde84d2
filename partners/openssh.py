"""The land partner's folder served by a real OpenSSH ``sshd`` on a loopback port: for the tests and the SFTP
benchmark, next to the pure-Python server of the sandbox.

``OpenSshServer(directory).start()`` writes its own ``sshd_config``, host key and ``authorized_keys`` under
``directory`` and runs ``/usr/sbin/sshd -D -e -f <config>`` on 127.0.0.1 and a free port, public-key
authentication only, every session forced into ``internal-sftp`` starting in the served folder. It runs as the
current user (root on the project's machines), so it needs no system account. ``sshd`` comes from the Debian
package ``openssh-server``.
"""

from __future__ import annotations

import contextlib
import os
import pwd
import shutil
import signal
import socket
import subprocess
import time
from pathlib import Path

import asyncssh

from lienthong.settings import partners_host

SSHD = Path("/usr/sbin/sshd")
PACKAGE = "openssh-server"
PRIVILEGE_SEPARATION_DIR = Path("/run/sshd")


class OpenSshMissing(RuntimeError):
    pass


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind((partners_host(), 0))
        return probe.getsockname()[1]


def write_key(path: Path) -> asyncssh.SSHKey:
    """A new Ed25519 key in OpenSSH format, unencrypted (``path``, mode 0600), with its ``.pub`` beside it."""
    key = asyncssh.generate_private_key("ssh-ed25519")
    path.parent.mkdir(parents=True, exist_ok=True)
    key.write_private_key(str(path))
    path.chmod(0o600)
    key.write_public_key(str(path) + ".pub")
    return key


class OpenSshServer:
    def __init__(self, directory: Path, user: str | None = None) -> None:
        if not SSHD.exists():
            raise OpenSshMissing(
                f"{SSHD} is missing: install the Debian package {PACKAGE} "
                f"(apt-get update && apt-get install -y {PACKAGE})"
            )
        self.directory = directory.resolve()
        self.root = self.directory / "served"
        self.user = user or _current_user()
        self.port = 0
        self.host_key = write_key(self.directory / "ssh_host_ed25519_key")
        self.authorized_keys = self.directory / "authorized_keys"
        self.authorized_keys.touch(mode=0o600)
        self.root.mkdir(parents=True, exist_ok=True)
        self._process: subprocess.Popen | None = None

    @property
    def host_key_line(self) -> str:
        return self.host_key.export_public_key("openssh").decode("ascii").strip()

    def authorize(self, public_key_line: str) -> None:
        with self.authorized_keys.open("a", encoding="ascii") as handle:
            handle.write(public_key_line.strip() + "\n")

    def config(self) -> Path:
        path = self.directory / "sshd_config"
        path.write_text(
            "\n".join(
                [
                    f"Port {self.port}",
                    f"ListenAddress {partners_host()}",
                    f"HostKey {self.directory / 'ssh_host_ed25519_key'}",
                    f"PidFile {self.directory / 'sshd.pid'}",
                    f"AuthorizedKeysFile {self.authorized_keys}",
                    f"AllowUsers {self.user}",
                    "StrictModes no",
                    "PubkeyAuthentication yes",
                    "PasswordAuthentication no",
                    "KbdInteractiveAuthentication no",
                    "PermitRootLogin prohibit-password",
                    "UsePAM no",
                    "AllowTcpForwarding no",
                    "X11Forwarding no",
                    "MaxStartups 50",
                    "Subsystem sftp internal-sftp",
                    f"ForceCommand internal-sftp -d {self.root}",
                    "LogLevel ERROR",
                ]
            )
            + "\n"
        )
        return path

    def start(self) -> None:
        """Start sshd (again on the same port after ``stop``) and wait until it accepts connections."""
        if self._process is not None:
            return
        if os.geteuid() == 0:
            PRIVILEGE_SEPARATION_DIR.mkdir(mode=0o755, exist_ok=True)
        self.port = self.port or free_port()
        config = self.config()
        self._process = subprocess.Popen(
            [str(SSHD), "-D", "-e", "-f", str(config)], stdout=subprocess.DEVNULL, stderr=subprocess.PIPE
        )
        deadline = time.monotonic() + 20
        while time.monotonic() < deadline:
            if self._process.poll() is not None:
                error = self._process.stderr.read().decode("utf-8", "replace") if self._process.stderr else ""
                self._process = None
                raise RuntimeError(f"sshd exited at start: {error.strip()}")
            try:
                with socket.create_connection((partners_host(), self.port), timeout=1) as probe:
                    if probe.recv(4).startswith(b"SSH"):
                        return
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError("sshd did not start accepting connections")

    def session_pids(self) -> list[int]:
        """The per-connection sshd processes (children of the listener): killing one drops that connection."""
        if self._process is None:
            return []
        children = Path(f"/proc/{self._process.pid}/task/{self._process.pid}/children")
        return [int(pid) for pid in children.read_text().split()] if children.exists() else []

    def drop_connections(self) -> None:
        for pid in self.session_pids():
            with contextlib.suppress(ProcessLookupError):
                os.kill(pid, signal.SIGKILL)

    def stop(self) -> None:
        """Stop the listener and every connection it serves."""
        if self._process is None:
            return
        self.drop_connections()
        self._process.terminate()
        try:
            self._process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            self._process.kill()
            self._process.wait()
        if self._process.stderr:
            self._process.stderr.close()
        self._process = None

    def remove(self) -> None:
        self.stop()
        shutil.rmtree(self.directory, ignore_errors=True)


def _current_user() -> str:
    return pwd.getpwuid(os.geteuid()).pw_name
