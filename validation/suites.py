"""One expectation suite per dataset, grouped along "đúng, đủ, sạch, sống" (correct, complete, clean, live).

A suite is built from two sources:
- the dataset's JSON Schema under ``schemas/datasets/`` (the contract's shape): required fields present, enums,
  code patterns, lengths, ISO dates;
- the domain rules of ``../shared/DESIGN.md`` ("Domain facts"): the personal ID gate and its agreement with the
  record, administrative units in force on the record's date, tax codes, names in NFC without the legacy 'Ð',
  plausible dates, death and cards, one person under two IDs, households; "sống": known events (a death, a
  card's expiry) reached the record, and a record that says when it was verified was verified within the window.

Every expectation carries ``meta`` = {rule, dimension, severity}:
- ``block``: the dataset does not go out (a table-level failure, or more than a set share of rows failing);
- ``quarantine``: the row is held back for a steward, the rest goes out;
- ``warn``: the row goes out and is listed for stewards.
Its ``description`` is the rule in words: Data Docs show it, and it is the reason given for a failing row.

Cross-row rules (one person under two IDs, a value seen on an earlier row) are validated on derived columns that
``validation.crossrow`` (streams) or a window function (in the database) adds before Great Expectations runs;
household consistency is validated on a roll-up of the households.
"""

from __future__ import annotations

import json
from collections.abc import Iterable
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache

import great_expectations as gx
import great_expectations.expectations as gxe
from great_expectations.expectations.expectation import Expectation
from great_expectations.expectations.metadata_types import FailureSeverity

from exchange.agencies import Agency, partner_agencies
from lienthong.settings import schema_file
from population import reference_data as ref
from validation import expectations as vx
from validation.outcome import DIMENSIONS

SEVERITIES = ("block", "quarantine", "warn")
GX_SEVERITY = {"block": FailureSeverity.CRITICAL, "quarantine": FailureSeverity.WARNING, "warn": FailureSeverity.INFO}

ROW_NUMBER = "row_number"  # position of the record in the input, from 1
BATCH_NUMBER = "batch_number"  # which batch of the run the record was validated in
DUPLICATE_OF = "duplicate_of"  # personal ID of an earlier record of the same person, else null
REPEAT_OF_ROW = "repeat_of_row"  # row number of an earlier record with the same value of the dataset's key
BOOKKEEPING = (ROW_NUMBER, BATCH_NUMBER)
HEADS, MEMBERS = "heads", "members"  # the household roll-up's columns, beside household_code

BLOCK_SHARE_OF_BAD_IDS = 0.01  # more than 1% of personal IDs failing the gate: the file is wrong, stop it
LEGACY_PROVINCE_CODES = tuple(code for code, _ in ref.LEGACY_PROVINCES)
ETHNICITY_CODES = tuple(code for code, _, _ in ref.ETHNIC_GROUPS)


@dataclass(frozen=True)
class Registry:
    """A partner's registry as its inbound dataset shows it, from the partner's agency file (``schemas/agencies``):
    which fields hold the population's, the identifier and the rule of its kind, the status."""

    partner: str
    match: dict[str, str]  # population field → the dataset's field
    identifier: str  # the partner's identifier column
    kind: str  # digits | tax-code | personal-tax-code | certificate-serial: the rule its values follow
    length: int | None  # digits: how many
    parcel: dict[str, str]  # certificate-serial: commune, map_sheet, parcel_number → the dataset's fields
    one_holder: bool  # one holder, who holds only one
    status: str | None  # the column saying whether the record is in force
    active: tuple[str, ...]  # its values that say it is


@dataclass(frozen=True)
class DatasetSpec:
    """What the suites need to know about a dataset beyond its schema."""

    name: str
    schema_file: str
    freshness_days: int  # default window within which a record must have been verified; an agreement sets its own
    record_date: str = "updated_at"  # the record's date: codes must be in force on it, dates not after it
    # the column that says when the record was last verified, where the dataset has one: a partner's record date
    # is when it last verified the record; the population's ``updated_at`` is only when a record last changed,
    # which says nothing of whether it is up to date ("sống")
    verified_on: str | None = None
    registry: Registry | None = None  # a partner's inbound dataset
    person_key: tuple[str, ...] = ()  # one person under two IDs: same values here, different personal IDs
    repeat_key: str | None = None  # a column whose values should each appear on one row only
    repeat_severity: str = "quarantine"
    households: bool = False
    severity_of: dict[str, str] = field(default_factory=dict)  # shape rules stricter than warn, by column
    coded: tuple[str, ...] = ()  # columns checked against a code list: their schema pattern adds nothing

    @property
    def schema(self) -> dict:
        return _schema(self.schema_file)

    @property
    def columns(self) -> list[str]:
        return list(self.schema["properties"])

    @property
    def partner(self) -> str | None:
        return self.registry.partner if self.registry else None

    @property
    def identifier(self) -> str | None:
        return self.registry.identifier if self.registry else None

    def column(self, population_field: str) -> str:
        """The dataset's column holding a population field (``full_name`` …): a partner's names it in its file."""
        return self.registry.match.get(population_field, population_field) if self.registry else population_field


@cache
def _schema(file_name: str) -> dict:
    return json.loads(schema_file(f"datasets/{file_name}").read_text(encoding="utf-8"))


PERSON_KEY = ("full_name", "date_of_birth", "sex", "birth_registration_province", "father_personal_id",
              "mother_personal_id")  # fmt: skip
RESIDENCES = ("permanent", "temporary", "current")
STRICT_SHAPES = {"personal_id": "quarantine", "sex": "quarantine"}
CITIZEN_EXTRACT = DatasetSpec(
    "citizen-extract",
    "citizen-extract.v1.json",
    freshness_days=365,
    person_key=PERSON_KEY,
    repeat_key="personal_id",
    households=True,
    severity_of=STRICT_SHAPES,
    coded=("birth_registration_province", "ethnicity_code", *(f"{k}_ward_code" for k in RESIDENCES)),
)


def _partner_spec(agency: Agency) -> DatasetSpec:
    """A partner's inbound dataset: people linked to the partner's identifier. An identifier that should be on one
    row only and is seen on two is listed for stewards (reconciliation classifies it as a duplicate link)."""
    publishes, reconciliation = agency.publishes, agency.reconciliation
    identifier, status = reconciliation.identifier, reconciliation.status
    registry = Registry(
        partner=agency.name,
        match=dict(reconciliation.match),
        identifier=identifier.field,
        kind=identifier.kind,
        length=identifier.length,
        parcel=dict(identifier.parcel or {}),
        one_holder=identifier.one_holder,
        status=status.field if status else None,
        active=status.active if status else (),
    )
    return DatasetSpec(
        publishes.dataset,
        f"{publishes.dataset}.v{publishes.version}.json",
        freshness_days=365,
        record_date=publishes.record_date,
        verified_on=publishes.record_date,
        registry=registry,
        repeat_key=registry.identifier if identifier.one_row else None,
        repeat_severity="warn",
        severity_of={**STRICT_SHAPES, registry.identifier: "quarantine"},
        coded=(registry.parcel["commune"],) if registry.parcel else (),
    )


def partner_datasets() -> dict[str, DatasetSpec]:
    """Each partner agency's inbound dataset, by agency."""
    specs = (_partner_spec(agency) for agency in partner_agencies().values() if agency.publishes)
    return {spec.partner: spec for spec in specs}


def partner_dataset(partner: str) -> DatasetSpec:
    specs = partner_datasets()
    try:
        return specs[partner]
    except KeyError:
        raise ValueError(f"unknown partner {partner!r}; known: {', '.join(specs)}") from None


def datasets() -> dict[str, DatasetSpec]:
    """Every dataset with a suite, by name: the population's extract and each partner's inbound dataset."""
    return {CITIZEN_EXTRACT.name: CITIZEN_EXTRACT, **{spec.name: spec for spec in partner_datasets().values()}}


def dataset_spec(name: str) -> DatasetSpec:
    known = datasets()
    try:
        return known[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; known: {', '.join(known)}") from None


# -- rules ------------------------------------------------------------------------------------------------------


def columns_of(kwargs: dict) -> tuple[str, ...]:
    """The columns an expectation reads (from its kwargs), in its own order; () for table-level ones."""
    if "column" in kwargs:
        return (kwargs["column"],)
    if "column_A" in kwargs:
        return (kwargs["column_A"], kwargs["column_B"])
    return tuple(kwargs.get("column_list") or ())


def expectation_columns(expectation: Expectation) -> tuple[str, ...]:
    return columns_of(expectation.configuration.kwargs)


def rule(expectation: Expectation, dimension: str, severity: str, description: str) -> Expectation:
    """Label an expectation with its dimension, severity, reason and a stable rule name."""
    if dimension not in DIMENSIONS or severity not in SEVERITIES:
        raise ValueError(f"dimension must be one of {DIMENSIONS} and severity one of {SEVERITIES}")
    columns = ", ".join(expectation_columns(expectation))
    name = f"{expectation.expectation_type}({columns})"
    if severity == "block" and expectation_columns(expectation):
        name += " share"
    expectation.meta = {"rule": name, "dimension": dimension, "severity": severity}
    expectation.description = description
    expectation.severity = GX_SEVERITY[severity]
    expectation.catch_exceptions = True  # a missing column must not hide the table rule that names it
    return expectation


def _shape_rules(spec: DatasetSpec) -> list[Expectation]:
    """The contract's shape, from the JSON Schema: required fields, enums, code patterns, lengths, dates."""
    schema = spec.schema
    rules = [
        rule(
            gxe.ExpectTableColumnsToMatchSet(column_set=[*spec.columns, *_derived(spec), *BOOKKEEPING],
                                             exact_match=True),
            "đủ", "block", f"the dataset has exactly the expected columns of {spec.schema_file}",
        )
    ]  # fmt: skip
    for column, prop in schema["properties"].items():
        types = prop["type"] if isinstance(prop["type"], list) else [prop["type"]]
        required = column in schema.get("required", ()) or "null" not in types
        strict = spec.severity_of.get(column, "quarantine" if required else "warn")
        if required:
            rules.append(
                rule(gxe.ExpectColumnValuesToNotBeNull(column=column), "đủ", "quarantine", f"{column} is present")
            )
        if "enum" in prop:
            allowed = [value for value in prop["enum"] if value is not None]
            rules.append(
                rule(
                    gxe.ExpectColumnValuesToBeInSet(column=column, value_set=allowed),
                    "đúng",
                    strict,
                    f"{column} is one of {', '.join(allowed)}",
                )  # fmt: skip
            )
        if "pattern" in prop and column not in spec.coded:
            rules.append(
                rule(
                    vx.ExpectColumnValuesToMatchCodePattern(column=column, pattern=prop["pattern"]),
                    "đúng",
                    strict,
                    f"{column} matches {prop['pattern']}",
                )  # fmt: skip
            )
        if "maxLength" in prop:
            rules.append(
                rule(
                    gxe.ExpectColumnValueLengthsToBeBetween(column=column, min_value=1, max_value=prop["maxLength"]),
                    "sạch",
                    strict,
                    f"{column} has 1 to {prop['maxLength']} characters",
                )  # fmt: skip
            )
        if prop.get("format") in ("date", "date-time"):
            rules.append(
                rule(
                    vx.ExpectColumnValuesToBeIsoDates(column=column),
                    "đúng",
                    strict,
                    f"{column} is an ISO 8601 date that exists",
                )  # fmt: skip
            )
    if spec.column("personal_id") in schema["properties"]:
        rules.append(
            rule(
                vx.ExpectColumnValuesToMatchCodePattern(
                    column=spec.column("personal_id"), pattern="^[0-9]{12}$", mostly=1 - BLOCK_SHARE_OF_BAD_IDS
                ),
                "đúng",
                "block",
                f"at most {BLOCK_SHARE_OF_BAD_IDS:.0%} of personal IDs fail the 12-digit gate (else the dataset "
                "is wrong as a whole)",
            )
        )
    return rules


def _person_rules(spec: DatasetSpec, since: str) -> list[Expectation]:
    """Rules on any dataset that describes people: names, birth, the personal ID's digits, freshness."""
    on = spec.record_date
    name, born, pid, sex = (spec.column(f) for f in ("full_name", "date_of_birth", "personal_id", "sex"))
    rules = [
        rule(vx.ExpectColumnValuesToBeNfc(column=name), "sạch", "quarantine", f"{name} is stored in NFC"),
        rule(vx.ExpectColumnValuesToBeFreeOfLegacyD(column=name), "sạch", "quarantine",
             f"{name} has no legacy 'Ð' (U+00D0) typed for 'Đ'"),
        rule(vx.ExpectDateOfBirthToBePlausible(column_A=born, column_B=on), "đúng", "quarantine",
             f"{born} is from 1900-01-01 and not after {on}"),
        rule(vx.ExpectPersonalIdToAgreeWithRecord(column_A=pid, column_B=born, part="birth_year"),
             "đúng", "warn", f"the personal ID's century/sex digit and year digits agree with {born}"),
        rule(vx.ExpectPersonalIdToAgreeWithRecord(column_A=pid, column_B=sex, part="sex"), "đúng", "warn",
             f"the personal ID's century/sex digit agrees with {sex}"),
    ]  # fmt: skip
    if spec.verified_on:  # "sống": verified within the agreement's window (how long ago it changed does not count)
        verified = vx.ExpectColumnValuesToBeOnOrAfter(column=spec.verified_on, since=since)
        rules.append(rule(verified, "sống", "warn", f"{spec.verified_on} (last verified) is on or after {since}"))
    if spec.repeat_key:
        rules.append(
            rule(
                gxe.ExpectColumnValuesToBeNull(column=REPEAT_OF_ROW),
                "sạch",
                spec.repeat_severity,
                f"{spec.repeat_key} does not repeat one on an earlier row (the value is that row)",
            )  # fmt: skip
        )
    return rules


def _citizen_rules(spec: DatasetSpec, as_of: date) -> list[Expectation]:
    """The population extract: the full record of the Law on Identification 2023, art. 9. Its "sống" rules ask
    whether a known event has reached the record: a death, a card's expiry."""
    on = spec.record_date
    rules = [
        rule(vx.ExpectPersonalIdToAgreeWithRecord(column_A="personal_id", column_B="birth_registration_province",
                                                  part="birth_registration_province"),
             "đúng", "warn", "the personal ID's first three digits are the birth-registration province"),
        rule(gxe.ExpectColumnValuesToBeInSet(column="birth_registration_province", value_set=LEGACY_PROVINCE_CODES),
             "đúng", "warn", "birth_registration_province is one of the 63 province codes used in ID numbers"),
        rule(gxe.ExpectColumnValuesToBeInSet(column="ethnicity_code", value_set=ETHNICITY_CODES), "đúng", "warn",
             "ethnicity_code is one of the 54 ethnic groups"),
        *(
            rule(vx.ExpectAdministrativeUnitInForce(column_A=f"{kind}_ward_code", column_B=on, level="ward"), "đúng",
                 "quarantine", f"{kind}_ward_code is a ward in force on {on} (catalogue with effective dates)")
            for kind in RESIDENCES
        ),
        *(
            rule(gxe.ExpectColumnValuesToNotBeNull(column=column), "đủ", "warn",
                 f"{column} is present (mandatory in the population record)")
            for column in ("place_of_birth", "birth_registration_province", "hometown", "ethnicity_code")
        ),
        rule(vx.ExpectColumnPairValuesToCompare(column_A="date_of_death", column_B="date_of_birth", comparison=">="),
             "đúng", "quarantine", "date_of_death is not before date_of_birth"),
        rule(vx.ExpectColumnPairValuesToCompare(column_A=on, column_B="date_of_death", comparison=">="), "đúng",
             "quarantine", f"date_of_death is not after {on}"),
        rule(vx.ExpectNoActiveCardAfterDeath(column_A="date_of_death", column_B="card_status"), "sống", "quarantine",
             "a dead person holds no active chip card"),
        rule(vx.ExpectNoActiveCardPastExpiry(column_A="card_expires_on", column_B="card_status", on=as_of.isoformat()),
             "sống", "warn", f"a chip card that expired before {as_of.isoformat()} is not shown as active"),
        rule(vx.ExpectColumnPairValuesToCompare(column_A="card_number", column_B="personal_id", comparison="=="),
             "đúng", "warn", "the chip card's number is the personal ID"),
        rule(vx.ExpectColumnPairValuesToCompare(column_A="card_expires_on", column_B="card_issued_on", comparison=">"),
             "đúng", "warn", "the chip card expires after it was issued"),
        rule(vx.ExpectColumnPairValuesToBePresentTogether(column_A="household_code", column_B="relation_to_head"),
             "đủ", "warn", "household_code and relation_to_head are both present or both absent"),
        rule(gxe.ExpectColumnValuesToBeNull(column=DUPLICATE_OF), "sạch", "quarantine",
             "one person under two IDs: same folded name, date of birth, sex, birth-registration province and "
             "parents as an earlier record (the value is its personal ID)"),
    ]  # fmt: skip
    return rules


def _partner_rules(spec: DatasetSpec) -> list[Expectation]:
    """The rule of the partner's identifier, chosen by its kind (the agency file's ``identifier.kind``)."""
    registry, on = spec.registry, spec.record_date
    column = registry.identifier
    if registry.kind == "personal-tax-code":
        expectation = vx.ExpectPersonalTaxCodeToBeValid(column_list=[column, spec.column("personal_id"), on])
        since = vx.PERSONAL_TAX_CODE_SINCE
        reason = f"{column} has a valid check digit, or is the holder's personal ID on records from {since}"
    elif registry.kind == "tax-code":
        expectation = vx.ExpectColumnValuesToBeTaxCode(column=column)
        reason = f"{column} is a tax code with a valid check digit"
    elif registry.kind == "certificate-serial":
        commune = registry.parcel["commune"]
        expectation = vx.ExpectAdministrativeUnitInForce(column_A=commune, column_B=on, level="ward")
        reason = f"{commune} is a commune or ward in force on {on}"
    else:  # digits
        digits = f"^[0-9]{{{registry.length}}}$"
        if spec.schema["properties"][column].get("pattern") == digits:
            return []  # the dataset's own pattern is the rule, among the shape rules
        expectation = vx.ExpectColumnValuesToMatchCodePattern(column=column, pattern=digits)
        reason = f"{column} is {registry.length} digits"
    return [rule(expectation, "đúng", "quarantine", reason)]


def household_rules() -> list[Expectation]:
    return [
        rule(gxe.ExpectColumnValuesToBeBetween(column=HEADS, min_value=1, max_value=1), "đúng", "warn",
             "a household has exactly one head (the value is how many it has)"),
    ]  # fmt: skip


def _derived(spec: DatasetSpec) -> tuple[str, ...]:
    return (*((DUPLICATE_OF,) if spec.person_key else ()), *((REPEAT_OF_ROW,) if spec.repeat_key else ()))


# -- the suite --------------------------------------------------------------------------------------------------


@dataclass
class DatasetSuite:
    """A dataset's expectations, ready to run: the row suite, the household roll-up suite and the rules by name."""

    spec: DatasetSpec
    columns: list[str]
    suite: gx.ExpectationSuite
    households: gx.ExpectationSuite | None
    as_of: date
    freshness_days: int

    @property
    def derived_columns(self) -> tuple[str, ...]:
        return tuple(c for c in _derived(self.spec) if c in _columns_present(self.suite))

    @property
    def person_key(self) -> tuple[str, ...]:
        return self.spec.person_key if DUPLICATE_OF in self.derived_columns else ()

    @property
    def repeat_key(self) -> str | None:
        return self.spec.repeat_key if REPEAT_OF_ROW in self.derived_columns else None

    def rules(self) -> list[dict]:
        """Every rule, for reports: name, expectation, columns, dimension, severity, description."""
        expectations = [*self.suite.expectations, *(self.households.expectations if self.households else [])]
        return [
            dict(
                **e.meta,
                expectation=e.expectation_type,
                columns=list(expectation_columns(e)),
                description=e.description,
            )
            for e in expectations
        ]


def _columns_present(suite: gx.ExpectationSuite) -> set[str]:
    return {c for e in suite.expectations for c in expectation_columns(e)}


def build_suite(
    dataset: str,
    as_of: date | None = None,
    freshness_days: int | None = None,
    columns: Iterable[str] | None = None,
) -> DatasetSuite:
    """The suite of a dataset. ``columns`` restricts it to an agreement's fields (rules on other columns drop
    out; a cross-row rule stays only if all its key columns are sent). ``as_of`` is the day the known events are
    judged on, and with ``freshness_days`` it sets the verification window: a dataset that says when each record
    was last verified must have it on or after as_of − freshness_days."""
    spec = dataset_spec(dataset)
    as_of = as_of or datetime.now(UTC).date()
    window = spec.freshness_days if freshness_days is None else freshness_days
    since = (as_of - timedelta(days=window)).isoformat()
    chosen = list(spec.columns if columns is None else columns)
    unknown = sorted(set(chosen) - set(spec.columns))
    if unknown:
        raise ValueError(f"{dataset} has no column(s) {', '.join(unknown)}")
    derived = []
    if spec.person_key and set(spec.person_key) <= set(chosen):
        derived.append(DUPLICATE_OF)
    if spec.repeat_key and spec.repeat_key in chosen:
        derived.append(REPEAT_OF_ROW)
    available = {*chosen, *derived}
    candidates = [*_shape_rules(spec), *_person_rules(spec, since)]
    candidates += _citizen_rules(spec, as_of) if spec.partner is None else _partner_rules(spec)
    chosen_rules = []
    for expectation in candidates:
        if expectation.expectation_type == "expect_table_columns_to_match_set":
            expectation.column_set = [*chosen, *derived, *BOOKKEEPING]
        elif not set(expectation_columns(expectation)) <= available:
            continue
        chosen_rules.append(expectation)
    name = spec.schema_file.removesuffix(".json")
    suite = gx.ExpectationSuite(name=name, expectations=chosen_rules)
    households = None
    if spec.households and {"household_code", "relation_to_head"} <= set(chosen):
        households = gx.ExpectationSuite(name=f"{name}.households", expectations=household_rules())
    return DatasetSuite(spec, chosen, suite, households, as_of, window)
