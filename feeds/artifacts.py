"""The artifact store: the exchange's files between one task and the next, readable by any worker.

A task writes its files (staged payloads and their subjects, sealed packages, receipts, inbound packages,
reports) in its own working folder, the workspace (``lienthong.settings.var_dir``), then *publishes* them: each
file goes to the store under its path relative to the workspace, and its SHA-256 comes back in an ``Artifact``
that the task hands on in its XCom. The next task, on whichever worker, *fetches* what it was handed: each file is
brought into its own workspace at the same relative path, and its SHA-256 is checked against the record before
anything reads it. A file whose hash differs is refused, named (``ArtifactCorrupt``).

Two stores, chosen by ``LIENTHONG_ARTIFACTS`` (``lienthong.settings.artifacts_url``):

- none (the default): the workspace folder itself, as on one machine (``make demo``, ``make airflow``):
  publishing only hashes the file, fetching checks it where it lies.
- ``s3://bucket[/prefix]``: an S3 or S3-compatible object store (MinIO, Ceph, a cloud's), through boto3, the
  store's own client; its endpoint and credentials come as boto3 reads them (``AWS_ENDPOINT_URL``,
  ``AWS_ACCESS_KEY_ID``, ``AWS_SECRET_ACCESS_KEY``, or the machine's role). A file is uploaded under a temporary
  key and copied to its key only once complete, with its SHA-256 in the object's metadata, so nothing half
  written is ever read; a download goes to a ``.partial`` file, checked, then renamed.

Every worker keeps its workspace at the same path (``LIENTHONG_VAR_DIR``; ``/opt/airflow/var`` in the image), its
own disk there: XCom values and the checkpoint's pending package name files by that path, and a key in the store
is the path relative to it. The ledger, the checkpoints and the sequences stay in PostgreSQL; what a partner
receives does not change. No private key is ever an artifact (``exchange.keys``).
"""

from __future__ import annotations

import hashlib
import logging
import os
import uuid
from collections.abc import Iterable
from dataclasses import asdict, dataclass
from pathlib import Path
from typing import Any, Protocol
from urllib.parse import urlsplit

from exchange.errors import VerificationError
from lienthong.settings import artifacts_url, var_dir

log = logging.getLogger(__name__)
BLOCK = 1 << 20
SHA256_METADATA = "sha256"  # the object's metadata key holding the file's SHA-256 (x-amz-meta-sha256)


class ArtifactCorrupt(VerificationError):
    """An artifact whose content does not match its recorded SHA-256: refused (a retry cannot fix it)."""


class ArtifactMissing(FileNotFoundError):
    """An artifact the store does not hold (a retry may find it once the store is back)."""


@dataclass(frozen=True)
class Artifact:
    """One file in the store: its address, its SHA-256 and size as written."""

    url: str
    sha256: str
    bytes: int

    def as_xcom(self) -> dict[str, Any]:
        return asdict(self)


def sha256_of(path: Path) -> tuple[str, int]:
    """The file's SHA-256 (hex) and size, read in blocks."""
    digest, size = hashlib.sha256(), 0
    with path.open("rb") as handle:
        while block := handle.read(BLOCK):
            digest.update(block)
            size += len(block)
    return digest.hexdigest(), size


def _check(path: Path, url: str, expected: str) -> None:
    found, _ = sha256_of(path)
    if found != expected:
        raise ArtifactCorrupt(f"artifact {url}: SHA-256 {found[:16]}… does not match the recorded {expected[:16]}…: "
                              "refused")  # fmt: skip


class ArtifactStore(Protocol):
    url: str

    def publish(self, path: Path) -> Artifact: ...

    def fetch(self, artifact: Artifact) -> Path: ...

    def fetch_path(self, path: Path) -> Path: ...

    def fetch_kept(self, path: Path) -> Path | None: ...


class _Keys:
    """Where a workspace file is in the store: its path relative to the workspace, under the store's URL."""

    def __init__(self, workspace: Path, url: str):
        self.workspace, self.url = Path(workspace).resolve(), url

    def key(self, path: Path) -> str:
        try:
            return Path(path).resolve().relative_to(self.workspace).as_posix()
        except ValueError:
            raise ValueError(f"{path} is not in the workspace {self.workspace}: only workspace files are artifacts")\
                from None  # fmt: skip

    def url_of(self, path: Path) -> str:
        return f"{self.url.rstrip('/')}/{self.key(path)}"

    def path_of(self, url: str) -> Path:
        base = self.url.rstrip("/") + "/"
        if not url.startswith(base):
            raise ValueError(f"artifact {url} is not in this store ({self.url})")
        relative = Path(url.removeprefix(base))
        if relative.is_absolute() or ".." in relative.parts:
            raise ValueError(f"artifact {url}: a key leaving the workspace is refused")
        return self.workspace / relative


class WorkspaceStore(_Keys):
    """The workspace folder as the store (one machine): publishing hashes, fetching checks in place."""

    def publish(self, path: Path) -> Artifact:
        sha256, size = sha256_of(Path(path))
        return Artifact(self.url_of(path), sha256, size)

    def fetch(self, artifact: Artifact) -> Path:
        path = self.path_of(artifact.url)
        if not path.exists():
            raise ArtifactMissing(f"artifact {artifact.url}: not in the workspace")
        _check(path, artifact.url, artifact.sha256)
        return path

    def fetch_path(self, path: Path) -> Path:
        return Path(path)

    def fetch_kept(self, path: Path) -> Path | None:
        return path if Path(path).exists() else None


class ObjectStore(_Keys):
    """An S3-compatible bucket (``s3://bucket/prefix``), with the workspace as this worker's local copy."""

    def __init__(self, workspace: Path, url: str, client=None):
        super().__init__(workspace, url)
        parts = urlsplit(url)
        self.bucket, self.prefix, self._client = parts.netloc, parts.path.strip("/"), client

    @property
    def client(self):
        if self._client is None:
            import boto3
            from botocore.config import Config

            # a store that does not answer fails the step within seconds, and Airflow retries the task (its retries
            # back off for minutes); a retry in here would hold a worker's slot while the store is away
            config = Config(retries={"max_attempts": 2, "mode": "standard"}, connect_timeout=3, read_timeout=120)
            self._client = boto3.client("s3", config=config)
        return self._client

    def _object_key(self, path: Path) -> str:
        return f"{self.prefix}/{self.key(path)}" if self.prefix else self.key(path)

    def publish(self, path: Path) -> Artifact:
        path = Path(path)
        sha256, size = sha256_of(path)
        key = self._object_key(path)
        temporary = f"{key}.partial-{uuid.uuid4().hex}"
        metadata = {SHA256_METADATA: sha256}
        self.client.upload_file(str(path), self.bucket, temporary, ExtraArgs={"Metadata": metadata})
        try:  # committed: copied to its key whole (a multipart copy for a large file), then the temporary goes
            self.client.copy({"Bucket": self.bucket, "Key": temporary}, self.bucket, key,
                             ExtraArgs={"Metadata": metadata, "MetadataDirective": "REPLACE"})  # fmt: skip
        finally:
            self.client.delete_object(Bucket=self.bucket, Key=temporary)
        return Artifact(self.url_of(path), sha256, size)

    def _download(self, path: Path, url: str, expected: str | None) -> Path:
        if path.exists() and expected is not None and sha256_of(path)[0] == expected:
            return path  # this worker wrote it, or fetched it before
        key = self._object_key(path)
        from botocore.exceptions import ClientError

        try:
            head = self.client.head_object(Bucket=self.bucket, Key=key)
        except ClientError as error:
            if error.response.get("Error", {}).get("Code") in ("404", "NoSuchKey", "NotFound"):
                raise ArtifactMissing(f"artifact {url}: not in the store") from None
            raise
        recorded = head.get("Metadata", {}).get(SHA256_METADATA)
        if expected is not None and recorded != expected:
            raise ArtifactCorrupt(f"artifact {url}: the store holds SHA-256 {str(recorded)[:16]}…, the task was "
                                  f"handed {expected[:16]}…: refused")  # fmt: skip
        path.parent.mkdir(parents=True, exist_ok=True)
        partial = path.with_name(f"{path.name}.partial-{os.getpid()}")
        self.client.download_file(self.bucket, key, str(partial))
        try:
            _check(partial, url, expected or recorded or "")
        except ArtifactCorrupt:
            partial.unlink(missing_ok=True)
            raise
        partial.replace(path)
        return path

    def fetch(self, artifact: Artifact) -> Path:
        return self._download(self.path_of(artifact.url), artifact.url, artifact.sha256)

    def fetch_path(self, path: Path) -> Path:
        """A workspace file by its path, checked against the SHA-256 the store recorded when it was published (a
        pending package named by the checkpoint, which keeps its path but not its hash). A file this worker holds
        and the store does not (sealed here, its publication cut short) is published now and used."""
        path = Path(path)
        try:
            return self._download(path, self.url_of(path), None)
        except ArtifactMissing:
            if not path.exists():
                raise
            log.warning("artifact %s: not in the store, only in this workspace; published now", self.url_of(path))
            self.publish(path)
            return path

    def fetch_kept(self, path: Path) -> Path | None:
        """A file or a folder kept in the store (a package, a receipt: what an audit re-verifies), brought here and
        checked against the store's record; None when the store holds nothing there."""
        path = Path(path)
        try:
            return self.fetch_path(path)
        except ArtifactMissing:
            pass
        prefix = self._object_key(path) + "/"
        listed = self.client.list_objects_v2(Bucket=self.bucket, Prefix=prefix).get("Contents", [])
        keys = [item["Key"] for item in listed if ".partial-" not in item["Key"]]
        for key in keys:
            self.fetch_path(path / key.removeprefix(prefix))
        return path if keys else None


def artifact_store(workspace: Path | None = None) -> WorkspaceStore | ObjectStore:
    """The store ``LIENTHONG_ARTIFACTS`` names, with ``workspace`` (default: the settings') as the local copy."""
    workspace = Path(workspace or var_dir()).resolve()
    url = artifacts_url()
    if url is None:
        return WorkspaceStore(workspace, workspace.as_uri())
    if urlsplit(url).scheme != "s3" or not urlsplit(url).netloc:
        raise ValueError(f"LIENTHONG_ARTIFACTS: {url!r} is not an s3://bucket[/prefix] URL")
    return ObjectStore(workspace, url)


SEALED_PATIENCE = 300.0  # seconds a sealed package's publication keeps trying while the store is away


def publish(
    paths: Iterable[Path | str], store: ArtifactStore | None = None, *, sealed: bool = False
) -> list[dict[str, Any]]:
    """Publish each file (each file of each folder), for the next task's XCom. A ``sealed`` package is published
    patiently (up to ``SEALED_PATIENCE``, backing off): its sequence is spent, and until it is in the store this
    worker's disk holds its only copy. Other files fail fast: a retry of their task writes them again."""
    store = store or artifact_store()
    files: list[Path] = []
    for path in map(Path, paths):
        files.extend(sorted(p for p in path.rglob("*") if p.is_file()) if path.is_dir() else [path])
    if not sealed:
        return [store.publish(path).as_xcom() for path in files]
    from tenacity import Retrying, retry_if_not_exception_type, stop_after_delay, wait_exponential

    patiently = Retrying(stop=stop_after_delay(SEALED_PATIENCE), wait=wait_exponential(min=1, max=30), reraise=True,
                         retry=retry_if_not_exception_type((VerificationError, ValueError)))  # fmt: skip
    return [patiently(store.publish, path).as_xcom() for path in files]


def fetch(artifacts: Iterable[dict[str, Any]], store: ArtifactStore | None = None) -> list[Path]:
    """Bring each artifact handed on by the previous task into this workspace, checked; their local paths."""
    store = store or artifact_store()
    return [store.fetch(Artifact(**artifact)) for artifact in artifacts]
