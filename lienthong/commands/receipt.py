"""``lienthong receipt``: the receiver signs a receipt for a package; the sender verifies it."""

from __future__ import annotations

from pathlib import Path
from typing import Annotated

import typer

from lienthong.commands.common import (
    CrlOption,
    DbOption,
    PkiOption,
    TrustOption,
    existing,
    fail,
    key_password,
    pki_directory,
    population_engine,
    require_schema,
    run_checks,
    say,
    trust_anchors,
    writable,
)

receipt_app = typer.Typer(help="Signed receipts (Receipt v1): create and verify.", no_args_is_help=True)


def _manifest(package: Path):
    from exchange.package import read_manifest

    return run_checks(read_manifest, package)


@receipt_app.command("create")
def receipt_create(
    package: Annotated[
        Path, typer.Argument(callback=existing("file or directory"), help="The package received (directory or .zip).")
    ],
    signer: Annotated[str, typer.Option(help="The receiving agency, whose signing key signs the receipt.")],
    out: Annotated[
        Path,
        typer.Option("--out", callback=writable("directory"), help="Directory for receipt.json and receipt.json.p7s."),
    ],
    status: Annotated[str, typer.Option(help="accepted or rejected.")] = "accepted",
    error: Annotated[list[str] | None, typer.Option("--error", help="Why it was rejected (repeatable).")] = None,
    record_count: Annotated[int | None, typer.Option(min=0, help="Records taken in. Default: the manifest's.")] = None,
    record: Annotated[bool, typer.Option(help="Record the receipt in the ledger (receipt_sent).")] = False,
    pki: PkiOption = None,
    db: DbOption = None,
) -> None:
    """Sign a receipt for a package (verify the package first) and print the receipt's directory."""
    from exchange.errors import SignerMismatch
    from exchange.pki import load_signer
    from exchange.receipt import record_receipt, sign_receipt

    manifest, manifest_sha256 = _manifest(package)
    try:
        key = load_signer(pki_directory(pki), signer, key_password())
    except (OSError, ValueError, KeyError) as problem:
        fail(problem)
    try:
        receipt = sign_receipt(manifest, manifest_sha256, out, key, status=status, errors=error or (),
                               record_count=record_count)  # fmt: skip
    except (ValueError, SignerMismatch) as problem:  # a signer that is not the recipient; a bad status
        fail(problem)
    except OSError as error:
        fail(f"{error.filename or out}: {error.strerror or type(error).__name__}")
    directory = out
    if record:
        engine = population_engine(db)
        require_schema(engine)
        record_receipt(engine, "receipt_sent", manifest, receipt, key.certificate)
    say(directory)


@receipt_app.command("verify")
def receipt_verify(
    receipt: Annotated[Path, typer.Argument(callback=existing("directory"), help="Directory with receipt.json(.p7s).")],
    package: Annotated[
        Path, typer.Option(callback=existing("file or directory"), help="The package the receipt should be for.")
    ],
    trust: TrustOption,
    crl: CrlOption = None,
    record: Annotated[bool, typer.Option(help="Record the receipt in the ledger (receipt_received).")] = False,
    db: DbOption = None,
) -> None:
    """Check a receipt's signature and that it is for this package. Exit 0 with a summary, or 1 naming the check."""
    from exchange.receipt import record_receipt, verify_receipt

    manifest, manifest_sha256 = _manifest(package)
    verified = run_checks(verify_receipt, receipt, trust_anchors(trust, crl), manifest, manifest_sha256)
    if record:
        engine = population_engine(db)
        require_schema(engine)
        record_receipt(engine, "receipt_received", manifest, verified.receipt, verified.signature.signer)
    say(verified.summary())
