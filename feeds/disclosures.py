"""Who received a citizen's data (issue 19): the feeds' side of the disclosure index (``population.disclosures``)
and the data-subject access report.

- ``package_recorder``: what ``PackageBuilder.seal`` (outbound) and ``acknowledge`` (inbound) call in their
  transaction, so that a package and its disclosures commit together;
- ``lookup``: every disclosure of one citizen, and every record a partner sent about them;
- ``access_report`` / ``write_report``: the statement a citizen is given: ``report.json`` (UTF-8 JSON, the same
  layout as manifests), ``report.json.p7s`` (a detached CMS signature over its exact bytes by the population
  agency's signing certificate, as manifests and receipts are signed: ``openssl cms -verify -binary -inform DER
  -in report.json.p7s -content report.json -CAfile root-ca.pem -purpose any``) and ``report.html``, printable, in
  Vietnamese. A report holds the citizen's own personal ID and package-level facts (partner, agreement, legal
  basis, purpose, fields, times, receipts, how many of their records): nothing of another citizen.

Full views of a record by stewards are not logged yet (there is no stewards' workbench): the report says so.
"""

from __future__ import annotations

from collections.abc import Callable, Iterable
from dataclasses import dataclass
from datetime import UTC, date, datetime, time
from pathlib import Path

from sqlalchemy import Engine
from sqlalchemy.orm import Session

from exchange.agencies import load_agencies
from exchange.agreements import Agreement
from exchange.package import Manifest, document_bytes
from exchange.pki import Signer
from exchange.signature import sign_detached
from lienthong.settings import disclosure_key
from population.db import session_factory
from population.disclosures import (
    INBOUND,
    OUTBOUND,
    Disclosure,
    PackageDisclosure,
    SubjectHasher,
    citizen_known,
    disclosures_of,
    record_package,
)
from population.identity import is_personal_id, mask_personal_id

REPORT_FORMAT = "lienthong-access-report/1"
REPORT, REPORT_SIGNATURE, REPORT_HTML = "report.json", "report.json.p7s", "report.html"
STEWARD_VIEWS_NOTE = (
    "Full views of a record by data stewards are not logged yet: the stewards' workbench does not exist. "
    "Once it does, each such view will be listed here."
)


class InvalidPersonalId(ValueError):
    """What was given is not a personal ID (12 ASCII digits)."""


def subject_hasher() -> SubjectHasher:
    """The hasher under the disclosure key (``DisclosureKeyMissing`` when there is none)."""
    return SubjectHasher(disclosure_key())


# -- writing -----------------------------------------------------------------------------------------------------


def package_recorder(
    agreement: Agreement, direction: str, sidecars: Iterable[Path]
) -> Callable[[Session, Manifest], int]:
    """A function recording a package of ``agreement`` in ``direction`` and the subjects in ``sidecars`` (one per
    payload file, ``population.disclosures.subjects_path``), in the transaction it is given."""
    fields = tuple(agreement.directions[direction].fields)
    sidecars = [Path(s) for s in sidecars]
    missing = [str(s) for s in sidecars if not s.is_file()]
    if missing:
        raise FileNotFoundError(f"{agreement.name}: no subjects for the disclosure index at {', '.join(missing)}")

    def record(session: Session, manifest: Manifest) -> int:
        package = PackageDisclosure(
            package_id=manifest.package_id,
            agreement=manifest.agreement,
            direction=manifest.direction,
            sender=manifest.sender,
            recipient=manifest.recipient,
            mode=manifest.mode,
            sequence=manifest.sequence,
            fields=fields,
            legal_basis=agreement.legal_basis,
            purpose=agreement.purpose,
            created_at=datetime.fromisoformat(manifest.created_at),
        )
        return record_package(session, package, sidecars)

    return record


# -- looking up --------------------------------------------------------------------------------------------------


@dataclass(frozen=True)
class CitizenDisclosures:
    personal_id: str
    known: bool  # a citizen of the population database
    since: date | None
    sent: tuple[Disclosure, ...]  # outbound: packages that carried the citizen's record to a partner
    received: tuple[Disclosure, ...]  # inbound: packages in which a partner sent records about them


def lookup(engine: Engine, personal_id: str, since: date | None = None) -> CitizenDisclosures:
    """Every disclosure of the citizen and every inbound record about them (``InvalidPersonalId`` for what is not
    12 digits; ``DisclosureKeyMissing`` without the key)."""
    if not is_personal_id(personal_id):
        raise InvalidPersonalId("a personal ID is exactly 12 digits (số định danh cá nhân)")
    subject = subject_hasher()(personal_id)
    start = datetime.combine(since, time(0), tzinfo=UTC) if since else None
    with session_factory(engine)() as session:
        known = citizen_known(session, personal_id)
        found = disclosures_of(session, subject, start)
    return CitizenDisclosures(
        personal_id,
        known,
        since,
        tuple(d for d in found if d.direction == OUTBOUND),
        tuple(d for d in found if d.direction == INBOUND),
    )


def summary_line(found: CitizenDisclosures) -> str | None:
    """The one-line answer when there is nothing to list; None when there is."""
    who = mask_personal_id(found.personal_id)
    since = f" since {found.since.isoformat()}" if found.since else ""
    if found.sent or found.received:
        return None
    if not found.known:
        return f"no citizen with personal ID {who} in the population database, and no disclosure of that ID{since}"
    return f"no disclosure of citizen {who}{since}: no package to or from a partner has carried their record"


# -- the access report -----------------------------------------------------------------------------------------


def _iso(moment: datetime | None) -> str | None:
    return moment.astimezone(UTC).strftime("%Y-%m-%dT%H:%M:%SZ") if moment else None


def _organisation(agency: str) -> str:
    found = load_agencies().get(agency)
    return found.organisation if found else agency


def _entry(disclosure: Disclosure) -> dict:
    partner = disclosure.partner
    return {
        "partner": partner,
        "partner_organisation": _organisation(partner),
        "agreement": disclosure.agreement,
        "legal_basis": list(disclosure.legal_basis),
        "purpose": disclosure.purpose,
        "fields": list(disclosure.fields),
        "package_id": disclosure.package_id,
        "sequence": disclosure.sequence,
        "mode": disclosure.mode,
        "records": disclosure.records,
        ("sent_at" if disclosure.direction == OUTBOUND else "partner_sent_at"): _iso(disclosure.created_at),
        **({"received_at": _iso(disclosure.recorded_at)} if disclosure.direction == INBOUND else {}),
        "receipt": {"status": disclosure.receipt_status, "at": _iso(disclosure.receipt_at)},
    }


def access_report(found: CitizenDisclosures, *, generated_at: datetime | None = None) -> dict:
    """The report's JSON document: about one citizen, from what the index holds for them alone."""
    return {
        "format": REPORT_FORMAT,
        "controller": {"agency": "population", "organisation": _organisation("population")},
        "subject": {"personal_id": found.personal_id, "in_population_database": found.known},
        "generated_at": _iso(generated_at or datetime.now(UTC)),
        "since": found.since.isoformat() if found.since else None,
        "legal_frame": "Personal Data Protection Law No. 91/2025/QH15: the data subject's right to know to whom "
        "their personal data is disclosed",
        "disclosures": [_entry(d) for d in found.sent],
        "received_from_partners": [_entry(d) for d in found.received],
        "steward_full_views": {"logged": False, "note": STEWARD_VIEWS_NOTE},
    }


def write_report(document: dict, out_dir: Path, signer: Signer) -> tuple[Path, Path, Path]:
    """``report.json``, its detached CMS signature ``report.json.p7s`` and ``report.html`` in ``out_dir``."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    data = document_bytes(document)
    paths = out_dir / REPORT, out_dir / REPORT_SIGNATURE, out_dir / REPORT_HTML
    for path, content in zip(paths, (data, sign_detached(data, signer), render_html(document).encode("utf-8")),
                             strict=True):  # fmt: skip
        partial = path.with_name(path.name + ".partial")
        partial.write_bytes(content)
        partial.replace(path)
    return paths


_STATUS_VI = {"accepted": "đã xác nhận tiếp nhận", "rejected": "bị từ chối", None: "chưa có biên nhận"}
_MODE_VI = {"full": "toàn bộ", "incremental": "thay đổi"}

_HTML = """<!DOCTYPE html>
<html lang="vi">
<head>
<meta charset="utf-8">
<title>Báo cáo chia sẻ dữ liệu cá nhân – {{ subject.personal_id }}</title>
<style>
body { font-family: "Noto Serif", "Times New Roman", serif; margin: 2em; color: #111; }
h1 { font-size: 1.4em; } h2 { font-size: 1.15em; margin-top: 1.6em; }
table { border-collapse: collapse; width: 100%; font-size: 0.9em; }
th, td { border: 1px solid #888; padding: 0.3em 0.5em; vertical-align: top; text-align: left; }
th { background: #eee; } .note { font-style: italic; } code { font-size: 0.85em; }
@media print { body { margin: 0.5cm; } }
</style>
</head>
<body>
<h1>Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân</h1>
<p>Cơ quan lập báo cáo: <strong>{{ controller.organisation }}</strong><br>
Số định danh cá nhân: <strong>{{ subject.personal_id }}</strong><br>
Thời điểm lập: {{ generated_at }}{% if since %}<br>Kể từ ngày: {{ since }}{% endif %}</p>
<p>Theo Luật Bảo vệ dữ liệu cá nhân số 91/2025/QH15, chủ thể dữ liệu có quyền được biết dữ liệu cá nhân của
mình đã được cung cấp cho cơ quan, tổ chức nào. Báo cáo này liệt kê mọi lần Cơ sở dữ liệu quốc gia về dân cư
gửi dữ liệu của công dân cho cơ quan khác qua nền tảng Liên thông, và mọi dữ liệu về công dân mà cơ quan khác
gửi đến.{% if not subject.in_population_database %} <strong>Số định danh này không có trong Cơ sở dữ liệu
quốc gia về dân cư.</strong>{% endif %}</p>

<h2>1. Dữ liệu của công dân đã được cung cấp cho</h2>
{% if disclosures %}
<table>
<tr><th>Thời điểm gửi</th><th>Cơ quan nhận</th><th>Thỏa thuận chia sẻ</th><th>Căn cứ pháp lý</th><th>Mục đích</th>
<th>Trường dữ liệu</th><th>Biên nhận</th></tr>
{% for d in disclosures %}
<tr><td>{{ d.sent_at }}<br>gói số {{ d.sequence }} ({{ mode(d.mode) }})</td>
<td>{{ d.partner_organisation }}</td><td>{{ d.agreement }}</td>
<td><ul>{% for basis in d.legal_basis %}<li>{{ basis }}</li>{% endfor %}</ul></td>
<td>{{ d.purpose }}</td><td>{{ d.fields | join(", ") }}</td>
<td>{{ status(d.receipt.status) }}{% if d.receipt.at %}<br>{{ d.receipt.at }}{% endif %}</td></tr>
{% endfor %}
</table>
{% else %}<p>Không có lần cung cấp nào.</p>{% endif %}

<h2>2. Dữ liệu về công dân do cơ quan khác gửi đến</h2>
{% if received_from_partners %}
<table>
<tr><th>Thời điểm nhận</th><th>Cơ quan gửi</th><th>Thỏa thuận chia sẻ</th><th>Căn cứ pháp lý</th>
<th>Trường dữ liệu</th><th>Số bản ghi</th><th>Biên nhận</th></tr>
{% for d in received_from_partners %}
<tr><td>{{ d.received_at }}</td><td>{{ d.partner_organisation }}</td><td>{{ d.agreement }}</td>
<td><ul>{% for basis in d.legal_basis %}<li>{{ basis }}</li>{% endfor %}</ul></td>
<td>{{ d.fields | join(", ") }}</td><td>{{ d.records }}</td>
<td>{{ status(d.receipt.status) }}{% if d.receipt.at %}<br>{{ d.receipt.at }}{% endif %}</td></tr>
{% endfor %}
</table>
{% else %}<p>Không có dữ liệu nào do cơ quan khác gửi đến.</p>{% endif %}

<h2>3. Lượt xem toàn bộ hồ sơ của cán bộ quản lý dữ liệu</h2>
<p class="note">Chưa được ghi nhận: hệ thống bàn làm việc của cán bộ quản lý dữ liệu chưa được triển khai, nên
chưa có nhật ký lượt xem. Khi có, mỗi lượt xem sẽ được liệt kê tại đây.</p>

<h2>Xác thực báo cáo</h2>
<p>Bản JSON của báo cáo (<code>report.json</code>) được ký số (CMS, tách rời, <code>report.json.p7s</code>) bằng
chứng thư ký số của cơ quan lập báo cáo. Kiểm tra bằng OpenSSL:<br>
<code>openssl cms -verify -binary -inform DER -in report.json.p7s -content report.json -CAfile root-ca.pem
-purpose any</code></p>
</body>
</html>
"""


def render_html(document: dict) -> str:
    """The report as a printable page in Vietnamese; every value escaped."""
    from jinja2 import Environment

    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_HTML)
    return template.render(**document, status=lambda s: _STATUS_VI.get(s, s), mode=lambda m: _MODE_VI.get(m, m))
