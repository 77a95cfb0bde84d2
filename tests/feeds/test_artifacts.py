"""The artifact store (``feeds.artifacts``): files handed from one task to the next through an S3-compatible store
(moto's server on loopback, spoken to over HTTP by boto3), each task in a workspace of its own, as Celery workers
on separate hosts run them; and the workspace folder as the store on one machine."""

from __future__ import annotations

import socket
from pathlib import Path

import boto3
import pytest
from moto.server import ThreadedMotoServer

from exchange.errors import VerificationError
from feeds import tasks as feeds
from feeds.artifacts import Artifact, ArtifactCorrupt, ArtifactMissing, ObjectStore, WorkspaceStore
from tests.feeds.feed_steps import wait_for_sftp_receipt
from tests.partners.fixtures import *  # noqa: F403 - sandbox_pki, key_password_env
from tests.partners.fixtures import exchange_world

BUCKET = "lienthong-artifacts"


def _free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


@pytest.fixture
def s3(monkeypatch):
    """An S3-compatible server on loopback with the artifacts' bucket; boto3 configured as a worker's would be."""
    port = _free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port)
    server.start()
    client_settings = {"AWS_ENDPOINT_URL": f"http://127.0.0.1:{port}", "AWS_ACCESS_KEY_ID": "lienthong-test",
                       "AWS_SECRET_ACCESS_KEY": "lienthong-test-secret", "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip
    for key, value in client_settings.items():
        monkeypatch.setenv(key, value)
    client = boto3.client("s3")
    client.create_bucket(Bucket=BUCKET)
    server.client = client
    yield server
    server.stop()


def _keys(client) -> list[str]:
    return sorted(o["Key"] for o in client.list_objects_v2(Bucket=BUCKET).get("Contents", []))


def test_a_file_published_on_one_worker_is_fetched_and_checked_on_another(s3, tmp_path):
    worker_a, worker_b = tmp_path / "a", tmp_path / "b"
    written = worker_a / "staging" / "land-owners" / "changes-0-9" / "citizens.csv"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"personal_id,full_name\n" * 1000)

    artifact = ObjectStore(worker_a, f"s3://{BUCKET}/cluster").publish(written)

    assert artifact.url == f"s3://{BUCKET}/cluster/staging/land-owners/changes-0-9/citizens.csv"
    assert _keys(s3.client) == ["cluster/staging/land-owners/changes-0-9/citizens.csv"]  # no temporary key left
    fetched = ObjectStore(worker_b, f"s3://{BUCKET}/cluster").fetch(artifact)
    assert fetched == worker_b / "staging" / "land-owners" / "changes-0-9" / "citizens.csv"
    assert fetched.read_bytes() == written.read_bytes()
    assert [p.name for p in fetched.parent.iterdir()] == ["citizens.csv"]  # no .partial left


def test_an_artifact_whose_content_does_not_match_its_record_is_refused_and_named(s3, tmp_path):
    written = tmp_path / "a" / "packages" / "tax-identity" / "p-1.zip"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"the sealed package")
    artifact = ObjectStore(tmp_path / "a", f"s3://{BUCKET}").publish(written)
    store_b = ObjectStore(tmp_path / "b", f"s3://{BUCKET}")

    # the object replaced behind the store's back, its recorded hash kept
    s3.client.put_object(Bucket=BUCKET, Key="packages/tax-identity/p-1.zip", Body=b"another package",
                         Metadata={"sha256": artifact.sha256})  # fmt: skip
    with pytest.raises(ArtifactCorrupt, match=r"artifact s3://lienthong-artifacts/packages/tax-identity/p-1.zip: "):
        store_b.fetch(artifact)
    assert not (tmp_path / "b" / "packages" / "tax-identity").exists() or not any(
        (tmp_path / "b" / "packages" / "tax-identity").iterdir()
    )
    # a record handed on that the store does not hold
    forged = Artifact(artifact.url, "0" * 64, artifact.bytes)
    with pytest.raises(ArtifactCorrupt, match="the task was handed 0000000000000000"):
        store_b.fetch(forged)
    # a refusal is final: the task fails at once rather than retrying a corrupt artifact
    assert isinstance(ArtifactCorrupt("x"), VerificationError) and feeds.is_final(ArtifactCorrupt("x"))

    # on one machine the workspace is the store: a file changed after it was handed on is refused the same way
    workspace = WorkspaceStore(tmp_path / "a", (tmp_path / "a").as_uri())
    local = workspace.publish(written)
    written.write_bytes(b"changed after publishing")
    with pytest.raises(ArtifactCorrupt, match="packages/tax-identity/p-1.zip: SHA-256"):
        workspace.fetch(local)


def test_an_artifact_url_outside_the_store_or_the_workspace_is_refused(s3, tmp_path):
    store = ObjectStore(tmp_path, f"s3://{BUCKET}")
    with pytest.raises(ValueError, match="leaving the workspace"):
        store.fetch(Artifact(f"s3://{BUCKET}/../../etc/passwd", "0" * 64, 1))
    with pytest.raises(ValueError, match="not in this store"):
        store.fetch(Artifact("s3://another-bucket/packages/x.zip", "0" * 64, 1))
    with pytest.raises(ValueError, match="not in the workspace"):
        store.publish(Path("/etc/hostname"))
    with pytest.raises(ArtifactMissing, match="not in the store"):
        store.fetch(Artifact(f"s3://{BUCKET}/packages/none.zip", "0" * 64, 1))


def test_the_store_down_fails_the_step_for_a_retry_that_then_finds_the_artifact(s3, tmp_path):
    written = tmp_path / "a" / "staging" / "f.csv"
    written.parent.mkdir(parents=True)
    written.write_bytes(b"rows")
    artifact = ObjectStore(tmp_path / "a", f"s3://{BUCKET}").publish(written)
    s3.stop()  # the object store unavailable: connection refused
    store_b = ObjectStore(tmp_path / "b", f"s3://{BUCKET}")
    with pytest.raises(Exception) as failed:
        store_b.fetch(artifact)
    assert not feeds.is_final(failed.value)  # Airflow retries the task
    s3.start()  # back (the server's objects kept)
    assert store_b.fetch(artifact).read_bytes() == b"rows"


def test_a_sealed_package_is_published_patiently_and_a_copy_only_here_is_published_when_asked_for(s3, tmp_path):
    """A sealed package's sequence is spent: its publication waits for a store that is away, and a worker that
    holds the only copy (its publication cut short) hands it on when a retry asks for it."""
    import threading

    from feeds.artifacts import publish

    store = ObjectStore(tmp_path / "a", f"s3://{BUCKET}")
    sealed = tmp_path / "a" / "packages" / "tax-identity" / "p-2.zip"
    sealed.parent.mkdir(parents=True)
    sealed.write_bytes(b"sealed")
    s3.stop()
    threading.Timer(3.0, s3.start).start()  # back in 3 s
    [artifact] = publish([sealed], store, sealed=True)
    assert ObjectStore(tmp_path / "b", f"s3://{BUCKET}").fetch(Artifact(**artifact)).read_bytes() == b"sealed"

    only_here = tmp_path / "a" / "packages" / "tax-identity" / "p-3.zip"
    only_here.write_bytes(b"sealed, never published")
    assert store.fetch_path(only_here) == only_here
    assert "packages/tax-identity/p-3.zip" in _keys(s3.client)
    with pytest.raises(ArtifactMissing):  # nowhere at all
        store.fetch_path(tmp_path / "a" / "packages" / "tax-identity" / "p-4.zip")


@pytest.mark.slow
def test_every_step_of_an_outbound_feed_and_a_snapshot_on_a_worker_of_its_own(s3, tmp_path, sandbox_pki, monkeypatch):
    """Each task of the land partner's incremental feed (SFTP, the receipt kept by the sensor's task) and of its
    snapshot (a mapped task per province) runs on a worker of its own: a workspace at the same path, as each
    worker's container or host has it, but empty (the previous worker's kept aside). Only the store carries the
    staged files, the package and the receipt from one to the next; the partner holds each record once."""
    world = exchange_world(tmp_path / "var", sandbox_pki, 61, citizens=300, only=["land"])
    for key, value in world.env.items():
        monkeypatch.setenv(key, value)
    monkeypatch.setenv("LIENTHONG_ARTIFACTS", f"s3://{BUCKET}/run")
    workspace = tmp_path / "workspace"  # the database and the partners stay under world.var
    monkeypatch.setenv("LIENTHONG_VAR_DIR", str(workspace))
    name, workers = "land-owners", iter(range(100))

    def on_next_worker() -> None:
        if workspace.exists():
            workspace.rename(tmp_path / f"worker-{next(workers)}")
        workspace.mkdir()

    try:
        on_next_worker()
        window = feeds.open_window(name)
        on_next_worker()
        checked = feeds.validate_window(name, window)
        assert {Path(a["url"]).suffix for a in checked["artifacts"]} >= {".csv"}
        on_next_worker()
        sealed = feeds.seal(name, window, checked)
        on_next_worker()  # the package task retried on another worker (its first try sealed, then its host died)
        assert feeds.seal(name, window, checked)["package_id"] == sealed["package_id"]
        on_next_worker()
        assert feeds.send(name, sealed) is None  # SFTP: the receipt comes later
        on_next_worker()
        receipt_dir = feeds.keep_receipt(sealed, wait_for_sftp_receipt(name, sealed))
        on_next_worker()
        delivery = feeds.check_receipt(sealed, receipt_dir)
        assert delivery["status"] == "accepted"
        assert feeds.close_window(name, window, delivery)

        on_next_worker()
        full = feeds.open_window(name, "full")
        shares = feeds.snapshot_shards(name, full)
        results = []
        for share in shares:
            on_next_worker()
            results.append(feeds.validate_shards(name, full, share))
        on_next_worker()
        snapshot = feeds.seal_snapshot(name, full, results)
        on_next_worker()
        feeds.send(name, snapshot)
        on_next_worker()
        receipt_dir = feeds.keep_receipt(snapshot, wait_for_sftp_receipt(name, snapshot))
        on_next_worker()
        assert feeds.check_receipt(snapshot, receipt_dir)["record_count"] == snapshot["record_count"]

        held = world.records_held("land", name)
        snapshot_ids = [r["personal_id"] for r in held][-snapshot["record_count"] :]
        assert len(snapshot_ids) == len(set(snapshot_ids)) == snapshot["record_count"] > 0
        # the ledger's daily audit, on yet another worker, re-verifies what the others kept, from the store
        on_next_worker()
        audit = feeds.audit_signatures(50, seed="cluster")
        assert audit["checked"] >= 4 and audit["problems"] == [] and audit["verified"] == audit["checked"]
        keys = _keys(s3.client)
        assert not [key for key in keys if ".partial-" in key]
        assert any(key.startswith(f"run/packages/{name}/") and key.endswith(".zip") for key in keys)
        assert not [key for key in keys if "pki" in key]  # no key or certificate goes through the store
    finally:
        world.sandbox.stop()
        world.engine.dispose()
