"""The land SFTP server's own checks: keys only, confinement to its folder, and how it takes its inbox."""

from __future__ import annotations

import json

import paramiko
import pytest

from connectors.sftp import SftpHook
from tests.partners.fixtures import wait_for


def raw_sftp() -> tuple[SftpHook, paramiko.SFTPClient]:
    """An SFTP session used directly, bypassing the hook's own confinement, to test the server's."""
    hook = SftpHook("lienthong_land")
    return hook, hook.get_conn()


def test_password_authentication_is_not_offered(partners):
    land = partners.partners["land"]
    client = paramiko.SSHClient()
    client.set_missing_host_key_policy(paramiko.AutoAddPolicy())
    with pytest.raises(paramiko.AuthenticationException):
        client.connect("127.0.0.1", land.port, username="population", password="guess", look_for_keys=False,
                       allow_agent=False)  # fmt: skip
    client.close()


def test_clients_cannot_leave_the_land_folder(partners):
    hook, sftp = raw_sftp()
    try:
        assert sorted(sftp.listdir("/..")) == sorted(sftp.listdir("/"))
        with pytest.raises(OSError):
            sftp.open("/../../../etc/hostname")
        assert sftp.normalize("../../..") == "/"
    finally:
        hook.close()


def test_hidden_uploads_wait_and_what_is_not_a_package_is_set_aside(partners, tmp_path):
    land = partners.partners["land"]
    hidden = land.root / "inbox" / ".half.zip.partial"
    hidden.write_bytes(b"half a package")
    junk = land.root / "inbox" / "junk.zip"
    junk.write_bytes(b"no manifest in here")
    try:
        wait_for(lambda: not junk.exists(), "the junk to be taken")
        assert hidden.exists()
        assert (land.state_dir / "done" / "refused" / "junk.zip").exists()
        assert not (land.root / "receipts" / "junk").exists()
    finally:
        hidden.unlink()


def test_the_endpoint_pins_the_host_key_the_server_presents(partners):
    land = partners.partners["land"]
    endpoint = json.loads((partners.state_dir / "endpoints.json").read_text())["partners"]["land"]
    assert endpoint["host_key"] == land.host_key_line and endpoint["port"] == land.port
    transport = paramiko.Transport(("127.0.0.1", land.port))
    try:
        transport.start_client(timeout=10)
        presented = transport.get_remote_server_key()
        assert f"{presented.get_name()} {presented.get_base64()}" == " ".join(land.host_key_line.split()[:2])
    finally:
        transport.close()
