"""SftpHook against the land partner's pure-Python SFTP server and against a real OpenSSH sshd."""

from __future__ import annotations

import hashlib
import os
import threading
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import pytest

from connectors.errors import (
    AuthenticationFailed,
    ConfigurationError,
    HostKeyRejected,
    PathOutsideFolder,
    TransientError,
)
from connectors.sftp import SftpHook
from exchange.package import verify_package
from exchange.receipt import verify_receipt
from partners.faults import Fault
from partners.openssh import write_key
from tests.partners.fixtures import PASSWORD, connection_like, define_connection, record_waits, wait_for


@dataclass
class Land:
    """One land SFTP server as the tests see it: a connection to it, the folder it serves, and how to make the
    land office take its inbox now."""

    conn_id: str
    root: Path
    take_inbox: Callable[[], None]
    document: dict


@pytest.fixture(params=["asyncssh", "openssh"])
def land(request, monkeypatch) -> Land:
    if request.param == "asyncssh":
        sandbox = request.getfixturevalue("partners")
        partner = sandbox.partners["land"]

        def inbox_emptied() -> None:
            wait_for(lambda: not any((partner.root / "inbox").glob("*.zip")), "the land office to take its inbox")

        document = sandbox.connections()["lienthong_land"]
        return Land("lienthong_land", partner.root, inbox_emptied, document)
    openssh = request.getfixturevalue("openssh_land")
    document = openssh.connection()
    return Land(define_connection(monkeypatch, "openssh_land", document), openssh.root,
                openssh.watcher.process_once, document)  # fmt: skip


def random_file(path: Path, size: int) -> Path:
    with path.open("wb") as handle:
        handle.write(os.urandom(size))
    return path


def digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def test_test_connection_lists_the_partners_inbox(land):
    ok, message = SftpHook(land.conn_id).test_connection()
    assert ok and message.endswith("/inbox"), message


def test_test_connection_fails_with_the_reason_when_the_inbox_is_missing(land, monkeypatch):
    document = land.document | {"extra": land.document["extra"] | {"inbox": "no-such-folder"}}
    ok, message = SftpHook(define_connection(monkeypatch, "land_without_inbox", document)).test_connection()
    assert not ok and "No such file" in message, message


def test_an_upload_lands_under_its_final_name_and_lists_by_pattern(land, tmp_path):
    source = random_file(tmp_path / "batch-1.bin", 300_000)
    with SftpHook(land.conn_id) as hook:
        placed = hook.upload(source, "receipts/batch-1.bin")
        assert placed.size == 300_000 and placed.path == "receipts/batch-1.bin"
        assert [f.path for f in hook.list("batch-*.bin", "receipts")] == ["receipts/batch-1.bin"]
        assert hook.list("*.zip", "receipts") == []
    assert digest(land.root / "receipts" / "batch-1.bin") == digest(source)
    assert not list((land.root / "receipts").glob(".batch-1.bin*"))


@pytest.mark.parametrize("path", ["../outside.zip", "/etc/passwd", "inbox/../../outside.zip", "inbox/a\0b"])
def test_paths_outside_the_agreed_folder_are_refused(land, path, tmp_path):
    hook = SftpHook(land.conn_id)
    with pytest.raises(PathOutsideFolder):
        hook.upload(random_file(tmp_path / "x", 10), path)


def test_a_link_leading_out_of_the_folder_is_refused(openssh_land, monkeypatch, tmp_path):
    outside = tmp_path / "outside"
    outside.mkdir()
    link = openssh_land.root / "escape"
    link.symlink_to(outside)
    try:
        hook = SftpHook(define_connection(monkeypatch, "openssh_link", openssh_land.connection()))
        with pytest.raises(PathOutsideFolder):
            hook.upload(random_file(tmp_path / "x", 10), "escape/x.zip")
        assert not list(outside.iterdir())
    finally:
        link.unlink()


def test_a_changed_host_key_is_refused(land, monkeypatch, tmp_path):
    other = write_key(tmp_path / "other_host_key").export_public_key("openssh").decode().strip()
    document = dict(land.document, extra=dict(land.document["extra"], host_key=other))
    hook = SftpHook(define_connection(monkeypatch, "changed_host_key", document))
    waits = record_waits(hook)
    with pytest.raises(HostKeyRejected):
        hook.list()
    assert waits == []


def test_a_missing_host_key_pin_is_a_configuration_error(land, monkeypatch):
    document = dict(land.document, extra={k: v for k, v in land.document["extra"].items() if k != "host_key"})
    with pytest.raises(ConfigurationError, match="host_key"):
        SftpHook(define_connection(monkeypatch, "no_pin", document)).list()


def test_an_unknown_user_key_is_refused(land, monkeypatch, tmp_path):
    stranger = tmp_path / "stranger_ed25519"
    write_key(stranger)
    document = dict(land.document, password=None, extra=dict(land.document["extra"], private_key_file=str(stranger)))
    hook = SftpHook(define_connection(monkeypatch, "stranger_key", document))
    waits = record_waits(hook)
    with pytest.raises(AuthenticationFailed):
        hook.list()
    assert waits == []


def test_a_delivered_package_is_answered_with_a_signed_receipt_and_stored_once(land, make_package, trust, tmp_path):
    package = make_package("land")
    name = package.path.name.removesuffix(".zip")
    with SftpHook(land.conn_id) as hook:
        hook.deliver_package(package.path)
        land.take_inbox()
        delivered = wait_for(lambda: hook.fetch_receipt(name), "the receipt")
        verify_receipt(delivered.write_to(tmp_path / "r1"), trust, package.manifest, package.manifest_sha256)
        hook.deliver_package(package.path)  # delivered again by a retried task
        land.take_inbox()
        again = wait_for(lambda: hook.fetch_receipt(name), "the second receipt")
    assert again == delivered


def test_an_upload_broken_mid_file_never_shows_a_partial_file_under_its_final_name(partners, tmp_path):
    land = partners.partners["land"]
    land.faults.add(Fault("disconnect", operation="upload", after_bytes=1_000_000))
    source = random_file(tmp_path / "big.zip", 3_000_000)
    final = land.root / "receipts" / "big.zip"
    seen: list[tuple[bool, bool]] = []

    def look() -> None:
        hidden = land.root / "receipts" / ".big.zip.partial"
        seen.append((final.exists(), hidden.exists()))

    hook = SftpHook("lienthong_land")
    waits = record_waits(hook, look)
    hook.upload(source, "receipts/big.zip")
    hook.close()
    assert len(waits) == 1 and seen == [(False, True)]
    assert digest(final) == digest(source)


@pytest.mark.slow
def test_openssh_connections_killed_mid_upload_leave_no_partial_file_under_the_final_name(openssh_land, monkeypatch,
                                                                                          tmp_path):  # fmt: skip
    """The real thing: the sshd process serving the connection is killed while the file is being written."""
    source = random_file(tmp_path / "big.zip", 96 * 1024 * 1024)
    hidden, final = openssh_land.root / ".big.zip.partial", openssh_land.root / "big.zip"
    killed = threading.Event()

    def kill_mid_upload() -> None:
        wait_for(lambda: hidden.exists() and hidden.stat().st_size > 1_000_000, "the upload to start", 60)
        openssh_land.server.drop_connections()
        killed.set()

    killer = threading.Thread(target=kill_mid_upload)
    killer.start()
    seen: list[bool] = []
    hook = SftpHook(define_connection(monkeypatch, "openssh_kill", openssh_land.connection()))
    waits = record_waits(hook, lambda: seen.append(final.exists()))
    hook.upload(source, "big.zip")
    hook.close()
    killer.join()
    assert killed.is_set() and waits and seen == [False] * len(waits)
    assert digest(final) == digest(source)
    final.unlink()


def test_a_download_broken_mid_file_resumes_where_it_stopped(partners, tmp_path):
    land = partners.partners["land"]
    source = random_file(land.root / "outbox" / "resume.bin", 2_000_000)
    expected = digest(source)
    land.faults.add(Fault("disconnect", operation="download", after_bytes=700_000))
    target = tmp_path / "resume.bin"
    partial = target.with_name("resume.bin.partial")
    offsets: list[int] = []
    hook = SftpHook("lienthong_land")
    record_waits(hook, lambda: offsets.append(partial.stat().st_size if partial.exists() else 0))
    try:
        assert hook.download("outbox/resume.bin", target) == 2_000_000
    finally:
        hook.close()
        source.unlink()
    assert len(offsets) == 1 and offsets[0] > 0
    assert digest(target) == expected


def test_the_land_outbox_package_downloads_and_verifies(partners, trust, population_key, tmp_path):
    with SftpHook("lienthong_land") as hook:
        (published,) = hook.outbox()
        target = tmp_path / Path(published.path).name
        hook.download(published.path, target)
    verified = verify_package(target, trust, recipient=population_key, decrypt_to=tmp_path / "plain")
    assert verified.manifest.sender == "land"
    assert verified.manifest.record_count == len(partners.partners["land"].store.all_people())


def test_a_server_that_went_down_is_retried_until_it_is_back(partners):
    land = partners.partners["land"]
    land.stop()
    hook = SftpHook("lienthong_land")
    waits = record_waits(hook, land.start)
    with hook:
        assert [f.path for f in hook.outbox("*.zip")]
    assert len(waits) == 1


def test_a_server_that_stays_down_gives_a_retryable_error(partners, monkeypatch):
    document = connection_like(partners, "lienthong_land", extra={"retries": 1, "connect_timeout": 2})
    partners.partners["land"].stop()
    hook = SftpHook(define_connection(monkeypatch, "land_down", document))
    record_waits(hook)
    with pytest.raises(TransientError):
        hook.list()


def test_credentials_never_reach_the_logs(partners, make_package, caplog, capfd):
    caplog.set_level("DEBUG")
    partners.partners["land"].faults.add(Fault("disconnect", operation="upload", after_bytes=1))
    package = make_package("land")
    hook = SftpHook("lienthong_land")
    record_waits(hook)
    hook.deliver_package(package.path)
    hook.close()
    captured = capfd.readouterr()
    logs = caplog.text + captured.out + captured.err
    assert "failed (attempt 1" in logs
    assert PASSWORD.decode() not in logs and "001200012345" not in logs
