"""The files of a fifth partner agency, Vietnam Social Security (``social-insurance``), exactly as
docs/adding-a-partner.md has an integration engineer write them: its agency file, its agreement and its dataset
schema, in a folder laid out as ``schemas/`` and named by ``LIENTHONG_SCHEMAS_PATH``. Data only."""

from __future__ import annotations

import json
from pathlib import Path

PARTNER, AGREEMENT, CONNECTION = "social-insurance", "social-insurance-identity", "lienthong_social_insurance"

AGENCY = """\
# Vietnam Social Security (Bảo hiểm xã hội Việt Nam): insured persons and their social insurance numbers.
agency: social-insurance
organisation: "Bảo hiểm xã hội Việt Nam"
publishes:
  dataset: social-insured
  version: 1
  record_date: updated_at
reconciliation:
  match:  # population field: the dataset's field
    personal_id: personal_id
    full_name: full_name
    date_of_birth: date_of_birth
    sex: sex
  identifier:
    field: social_insurance_number
    kind: digits
    length: 10
    one_holder: true  # lifelong, one per person
    one_row: true
  status:
    field: status
    active: [active]
sandbox:
  server:
    kind: rest
    auth: oauth2
    collection: insured-persons
  registry:
    minimum_age: 15
    share: 0.6
"""

AGREEMENT_FILE = """\
# Population → Vietnam Social Security: identity changes and deaths of insured persons.
# Vietnam Social Security → population: insured persons and their social insurance numbers (inbound).
agreement: social-insurance-identity
partner: social-insurance
legal_basis:
  - "Law on Identification No. 26/2023/QH15, art. 10: use of the National Population Database by agencies"
  - "Decree 47/2020/NĐ-CP on sharing state data, as amended by Decree 194/2025/NĐ-CP"
  - "Law on Social Insurance No. 41/2024/QH15"
purpose: "Keep the records of insured persons in line with their identity and deaths, so that benefits follow them"
schedule: "15 1 * * *"
retention_days: 90
transport:
  kind: rest
  connection_id: lienthong_social_insurance
  pool_slots: 2
format: jsonl
directions:
  outbound:
    dataset: citizen-extract
    schema_version: 1
    mode: incremental
    start: beginning  # the test's first run sends the day's changes (the default starts at the log's head)
    fields:
      personal_id: "Identifies the insured person (Decision 06/QĐ-TTg: the personal ID is the insurance identifier)"
      full_name: "The insured person's particulars (Law 41/2024, art. 28)"
      date_of_birth: "Age-based contribution and pension rules"
      sex: "Retirement age and maternity benefits"
      permanent_ward_code: "The collecting social insurance office"
      date_of_death: "Ends contributions and triggers survivor benefits (Law 41/2024, art. 85)"
      updated_at: "Order of changes"
    encryption: true
    recipient_certificate: social-insurance/encryption.pem
    validation:
      suite: citizen-extract
      max_quarantined_share: 0.05
      min_rows_for_share: 200
      freshness_days: 2
    delivery_deadline_hours: 6
  inbound:
    dataset: social-insured
    schema_version: 1
    mode: full
    fields:
      personal_id: "Links the insured person to the citizen"
      full_name: "The insurer's copy of the name, reconciled with the population record"
      date_of_birth: "The insurer's copy of the date of birth, reconciled with the population record"
      sex: "The insurer's copy of sex, reconciled with the population record"
      social_insurance_number: "The lifelong social insurance number linked to the citizen (Law 41/2024, art. 4)"
      status: "Whether the person is insured: a dead person still insured is reported to stewards"
      updated_at: "When the insurer last verified the record (freshness)"
    encryption: true
    validation:
      suite: social-insured
      max_quarantined_share: 0.05
      min_rows_for_share: 200
"""

DATASET = {
    "$schema": "https://json-schema.org/draft/2020-12/schema",
    "$id": "lienthong:dataset:social-insured:1",
    "title": "Vietnam Social Security: insured persons, version 1",
    "description": "What Vietnam Social Security sends: one row per insured person and social insurance number.",
    "type": "object",
    "additionalProperties": False,
    "required": ["full_name", "date_of_birth", "social_insurance_number", "status", "updated_at"],
    "properties": {
        "personal_id": {"type": ["string", "null"], "pattern": "^[0-9]{12}$"},
        "full_name": {"type": "string", "maxLength": 100},
        "date_of_birth": {"type": "string", "format": "date"},
        "sex": {"type": ["string", "null"], "enum": ["M", "F", None]},
        "social_insurance_number": {"type": "string", "pattern": "^[0-9]{10}$"},
        "status": {"type": "string", "enum": ["active", "inactive"]},
        "updated_at": {"type": "string", "format": "date-time"},
    },
}


def write_partner_files(folder: Path) -> Path:
    """The three files of the new partner, in the layout of ``schemas/``."""
    for relative, text in {
        "agencies/social-insurance.yaml": AGENCY,
        "agreements/social-insurance.yaml": AGREEMENT_FILE,
        "datasets/social-insured.v1.json": json.dumps(DATASET, indent=2, ensure_ascii=False) + "\n",
    }.items():
        (folder / relative).parent.mkdir(parents=True, exist_ok=True)
        (folder / relative).write_text(text, encoding="utf-8")
    return folder
