"""``lienthong package``: build a signed (and optionally encrypted) exchange package, verify one."""

from __future__ import annotations

import csv
import json
import tempfile
from collections.abc import Iterator
from contextlib import nullcontext
from pathlib import Path
from typing import Annotated, Any, TextIO

import typer

from exchange.payload import MAX_RECORD_CHARS
from exchange.pki import POPULATION
from lienthong.commands.common import (
    CrlOption,
    DbOption,
    PkiOption,
    TrustOption,
    existing,
    fail,
    key_password,
    optional_key_password,
    pki_directory,
    population_engine,
    require_schema,
    run_checks,
    say,
    trust_anchors,
    writable,
)

package_app = typer.Typer(help="Exchange packages: build, verify, zip.", no_args_is_help=True)
INPUT_FORMATS = {".csv": ".csv", ".jsonl": ".jsonl", ".ndjson": ".jsonl"}


@package_app.command("build")
def package_build(
    agreement: Annotated[str, typer.Option(help="The sharing agreement the package is made under.")],
    recipient: Annotated[str, typer.Option(help="The receiving agency: health, tax, land, business (or population).")],
    input_file: Annotated[Path, typer.Option("--input", callback=existing("file"), help="CSV or JSONL records.")],
    out: Annotated[
        Path, typer.Option("--out", callback=writable("directory"), help="Directory to write the package into.")
    ],
    encrypt: Annotated[bool, typer.Option(help="Encrypt the payload to the recipient's certificate.")] = False,
    sender: Annotated[str, typer.Option(help="The sending agency (whose signing key is used).")] = POPULATION,
    schema: Annotated[str, typer.Option(help="Schema name of the records.")] = "citizen-extract",
    schema_version: Annotated[str, typer.Option(help="Schema version of the records.")] = "1",
    mode: Annotated[str, typer.Option(help="full or incremental.")] = "full",
    as_zip: Annotated[bool, typer.Option("--zip", help="Also write <package>.zip and print its path.")] = False,
    pki: PkiOption = None,
    db: DbOption = None,
) -> None:
    """Pack a CSV or JSONL file as an exchange package and print the package's path. A package from the population
    database (--sender population) is a disclosure: it is made under an agreement of that name, and its records are
    indexed for the citizens' access reports (``lienthong disclosures``) as a feed's packages are."""
    from exchange.package import PackageBuilder, SchemaRef, zip_package
    from exchange.pki import ENCRYPTION, load_certificate, load_signer
    from feeds.disclosures import package_recorder
    from population.disclosures import OUTBOUND, SubjectsFile, subjects_path

    suffix = INPUT_FORMATS.get(input_file.suffix.lower())
    if suffix is None:
        fail(f"--input must be .csv or .jsonl, not {input_file.name}")
    engine = population_engine(db)
    require_schema(engine)
    directory = pki_directory(pki)
    index = _disclosure_index(agreement, recipient) if sender == POPULATION else None
    try:
        signer = load_signer(directory, sender, key_password())
        encrypt_for = load_certificate(directory.certificate(recipient, ENCRYPTION)) if encrypt else None
        out.mkdir(parents=True, exist_ok=True)
        settings = dict(agreement=agreement, recipient=recipient, sender=sender, mode=mode, signer=signer,
                        schema=SchemaRef(schema, schema_version), encrypt_for=encrypt_for)  # fmt: skip
        with PackageBuilder(out, **settings) as builder, tempfile.TemporaryDirectory() as scratch:
            name = input_file.with_suffix(suffix).name
            if suffix == ".csv":
                columns, records = _csv_records(input_file)
            else:
                columns, records = [], _jsonl_records(input_file)
            sidecar = subjects_path(Path(scratch) / name)
            with SubjectsFile(sidecar, index[1]) if index else nullcontext() as subjects:
                fields = dict.fromkeys(columns)
                if subjects is not None:
                    records = _indexed(records, subjects, fields)
                builder.add_records(name, records, columns=columns or None)
            also = package_recorder(index[0], OUTBOUND, [sidecar], fields=tuple(fields)) if index else None
            built = run_checks(builder.seal, engine, also=also)
    except (OSError, ValueError, KeyError) as error:
        fail(error)
    say(zip_package(built.path) if as_zip else built.path)


def _disclosure_index(name: str, recipient: str):
    """The agreement a population package is made under and the disclosure index's hasher; refused without them, or
    when the agreement is with another partner than the recipient."""
    from exchange.agreements import load_agreements
    from feeds.disclosures import subject_hasher
    from lienthong.settings import DisclosureKeyMissing

    agreement = load_agreements().get(name)
    if agreement is None:
        fail(f"--agreement: no agreement {name!r}; a package from the population database is a disclosure, made under "
             "an agreement (schemas/agreements)")  # fmt: skip
    if agreement.partner != recipient:
        fail(f"--recipient {recipient}: agreement {name!r} is with {agreement.partner}")
    try:
        return agreement, subject_hasher()
    except DisclosureKeyMissing as error:
        fail(error)


def _indexed(records: Iterator[dict[str, Any]], subjects, fields: dict[str, None]) -> Iterator[dict[str, Any]]:
    """The records, unchanged, each one's personal ID written to the disclosure index's sidecar and its keys to the
    fields disclosed (in the order first seen)."""
    for record in records:
        subjects.add(record.get("personal_id") if isinstance(record.get("personal_id"), str) else None)
        fields.update(dict.fromkeys(record))
        yield record


def _lines(path: Path, handle: TextIO) -> Iterator[str]:
    """An input file's lines, each refused (naming the line) over the payload's ``MAX_RECORD_CHARS`` before it is
    whole in memory; text that is not UTF-8 is refused too (decoded a block at a time: after which line is known)."""
    number = 0
    try:
        while line := handle.readline(MAX_RECORD_CHARS + 1):
            number += 1
            if len(line) > MAX_RECORD_CHARS:
                raise ValueError(f"{path.name} line {number}: a line over {MAX_RECORD_CHARS:,} characters")
            yield line
    except UnicodeDecodeError:
        raise ValueError(f"{path.name}: not UTF-8, after line {number}") from None


def _csv_records(path: Path) -> tuple[list[str], Iterator[dict[str, Any]]]:
    handle = path.open(encoding="utf-8-sig", newline="")
    reader = csv.DictReader(_lines(path, handle), restkey="<cells beyond the header>")

    def records() -> Iterator[dict[str, Any]]:
        with handle:
            try:
                yield from reader
            except csv.Error as error:  # a field over the csv module's limit, a NUL
                raise ValueError(f"{path.name} line {reader.line_num}: {error}") from None

    try:
        columns = list(reader.fieldnames or [])
    except csv.Error as error:
        handle.close()
        raise ValueError(f"{path.name} line 1: {error}") from None
    return columns, records()


def _jsonl_records(path: Path) -> Iterator[dict[str, Any]]:
    with path.open(encoding="utf-8") as handle:
        for number, line in enumerate(_lines(path, handle), 1):
            if not line.strip():
                continue
            try:
                record = json.loads(line)
            except json.JSONDecodeError as error:
                raise ValueError(f"{path.name} line {number}: not JSON ({error.msg}, column {error.colno})") from None
            except RecursionError:
                raise ValueError(f"{path.name} line {number}: nested deeper than the JSON decoder goes") from None
            except ValueError as error:  # an integer longer than Python converts
                raise ValueError(f"{path.name} line {number}: {str(error).split(':')[0]}") from None
            if not isinstance(record, dict):
                raise ValueError(f"{path.name} line {number} is not a JSON object")
            yield record


@package_app.command("verify")
def package_verify(
    path: Annotated[
        Path, typer.Argument(callback=existing("file or directory"), help="The package: a directory or a .zip.")
    ],
    trust: TrustOption,
    crl: CrlOption = None,
    key: Annotated[Path | None, typer.Option(callback=existing(), help="Recipient's private key, to decrypt.")] = None,
    cert: Annotated[Path | None, typer.Option(callback=existing(), help="Recipient's encryption certificate.")] = None,
    decrypt_to: Annotated[
        Path | None,
        typer.Option(callback=writable("directory"), help="Where decrypted files go. Default: <package>.decrypted"),
    ] = None,
    record: Annotated[bool, typer.Option(help="Record the package as received (feed and ledger).")] = False,
    sequence: Annotated[bool, typer.Option(help="Check the sequence against the database.")] = True,
    db: DbOption = None,
) -> None:
    """Check signature, chain, dates, key usage, revocation, files and sequence; decrypt with --key/--cert.
    Exit 0 with a one-line summary, or 1 with a message naming the check that failed."""
    from exchange.package import accept_package, verify_package
    from exchange.pki import load_recipient

    if (key is None) != (cert is None):
        fail("--key and --cert go together")
    if record and not sequence:
        fail("--record needs the sequence check")
    anchors = trust_anchors(trust, crl)
    engine = None
    if sequence:
        engine = population_engine(db)
        require_schema(engine)
    try:
        recipient = load_recipient(cert, key, optional_key_password()) if key and cert else None
    except (OSError, ValueError) as error:
        fail(error)
    verified = run_checks(verify_package, path, anchors, engine=engine, recipient=recipient, decrypt_to=decrypt_to)
    if record:
        run_checks(accept_package, engine, verified)
    say(verified.summary() + ("; recorded as received" if record else ""))


@package_app.command("zip")
def package_zip(
    path: Annotated[Path, typer.Argument(callback=existing("directory"), help="The package directory.")],
) -> None:
    """Write <package>.zip (for transports that carry one file) and print its path."""
    from exchange.package import zip_package

    try:
        say(zip_package(path))
    except (OSError, ValueError) as error:
        fail(error)
