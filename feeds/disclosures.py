"""Who received a citizen's data (issue 19): the feeds' side of the disclosure index (``population.disclosures``)
and the data-subject access report.

- ``package_recorder``: what ``PackageBuilder.seal`` (outbound) and ``acknowledge`` (inbound) call in their
  transaction, so that a package and its disclosures commit together;
- ``lookup``: every disclosure of one citizen, and every record a partner sent about them;
- ``record_full_views``: what shows a steward a citizen's record whole (personal ID unmasked) calls first, so that
  each such view is logged (who, when, which record, why) before anything is shown;
- ``access_report`` / ``write_report``: the statement a citizen is given: ``report.json`` (UTF-8 JSON, the same
  layout as manifests), ``report.json.p7s`` (a detached CMS signature over its exact bytes by the population
  agency's signing certificate, as manifests and receipts are signed: ``openssl cms -verify -binary -inform DER
  -in report.json.p7s -content report.json -CAfile root-ca.pem -purpose any``), and the same in Vietnamese for
  reading: ``report.html`` and ``report.pdf`` (signed as well, ``report.pdf.p7s``). A report holds the citizen's
  own personal ID and package-level facts (partner, agreement, legal basis, purpose, fields, times, receipts, how
  many of their records) and the stewards' full views of their records: nothing of another citizen.
"""

from __future__ import annotations

import logging
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
    FullView,
    PackageDisclosure,
    SubjectHasher,
    citizen_known,
    disclosures_of,
    record_package,
    record_steward_views,
    steward_views_of,
)
from population.identity import is_personal_id, mask_personal_id

REPORT_FORMAT = "lienthong-access-report/1"
REPORT, REPORT_SIGNATURE, REPORT_HTML = "report.json", "report.json.p7s", "report.html"
REPORT_PDF, REPORT_PDF_SIGNATURE = "report.pdf", "report.pdf.p7s"


class InvalidPersonalId(ValueError):
    """What was given is not a personal ID (12 ASCII digits)."""


def subject_hasher() -> SubjectHasher:
    """The hasher under the disclosure key (``DisclosureKeyMissing`` when there is none)."""
    return SubjectHasher(disclosure_key())


# -- writing -----------------------------------------------------------------------------------------------------


def package_recorder(
    agreement: Agreement, direction: str, sidecars: Iterable[Path], fields: Iterable[str] | None = None
) -> Callable[[Session, Manifest], int]:
    """A function recording a package of ``agreement`` in ``direction`` and the subjects in ``sidecars`` (one per
    payload file, ``population.disclosures.subjects_path``), in the transaction it is given. The fields disclosed
    are the agreement direction's, or ``fields`` for a package made by hand (``lienthong package build``)."""
    fields = tuple(agreement.directions[direction].fields if fields is None else fields)
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
    viewed: tuple[FullView, ...] = ()  # their records shown whole to a steward


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
        viewed = steward_views_of(session, subject, start)
    return CitizenDisclosures(
        personal_id,
        known,
        since,
        tuple(d for d in found if d.direction == OUTBOUND),
        tuple(d for d in found if d.direction == INBOUND),
        tuple(viewed),
    )


def record_full_views(session: Session, shown: Iterable[tuple[str | None, str]], steward: str, purpose: str) -> int:
    """Log that ``steward`` is shown each (personal ID, which record) whole, in the caller's transaction: call it
    before showing them, and show nothing if it fails (``DisclosureKeyMissing`` without the key). Records without a
    valid personal ID cannot be looked up by one and are not logged."""
    hasher = subject_hasher()
    views = [(hasher(pid), record) for pid, record in shown if pid is not None and is_personal_id(pid)]
    return record_steward_views(session, views, steward, purpose)


def summary_line(found: CitizenDisclosures) -> str | None:
    """The one-line answer when there is nothing to list; None when there is."""
    who = mask_personal_id(found.personal_id)
    since = f" since {found.since.isoformat()}" if found.since else ""
    if found.sent or found.received or found.viewed:
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
        "steward_full_views": [
            {"viewed_at": _iso(v.viewed_at), "steward": v.steward, "record": v.record, "purpose": v.purpose}
            for v in found.viewed
        ],
    }


def report_files(document: dict, signer: Signer) -> dict[str, bytes]:
    """The report's files by name: ``report.json`` and its detached CMS signature ``report.json.p7s``,
    ``report.html``, ``report.pdf`` and its signature ``report.pdf.p7s``."""
    data, pdf = document_bytes(document), render_pdf(document)
    return {
        REPORT: data,
        REPORT_SIGNATURE: sign_detached(data, signer),
        REPORT_HTML: render_html(document).encode("utf-8"),
        REPORT_PDF: pdf,
        REPORT_PDF_SIGNATURE: sign_detached(pdf, signer),
    }


def write_report(document: dict, out_dir: Path, signer: Signer) -> tuple[Path, ...]:
    """The report's files (``report_files``) in ``out_dir``, each written whole or not at all."""
    out_dir = Path(out_dir)
    out_dir.mkdir(parents=True, exist_ok=True)
    contents = report_files(document, signer)
    for name, content in contents.items():
        partial = out_dir / f"{name}.partial"
        partial.write_bytes(content)
        partial.replace(out_dir / name)
    return tuple(out_dir / name for name in contents)


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
{% if steward_full_views %}
<table>
<tr><th>Thời điểm xem</th><th>Cán bộ</th><th>Hồ sơ</th><th>Mục đích</th></tr>
{% for v in steward_full_views %}
<tr><td>{{ v.viewed_at }}</td><td>{{ v.steward }}</td><td>{{ v.record }}</td><td>{{ v.purpose }}</td></tr>
{% endfor %}
</table>
{% else %}<p>Không có lượt xem nào.</p>{% endif %}

<h2>Xác thực báo cáo</h2>
<p>{{ verification }}<br>
<code>{{ openssl }}</code></p>
</body>
</html>
"""


def render_html(document: dict) -> str:
    """The report as a printable page in Vietnamese; every value escaped."""
    from jinja2 import Environment

    environment = Environment(autoescape=True, trim_blocks=True, lstrip_blocks=True)
    template = environment.from_string(_HTML)
    return template.render(**document, status=_status_vi, mode=_mode_vi, verification=_VERIFICATION, openssl=_OPENSSL)


def _status_vi(status: str | None) -> str:
    return _STATUS_VI.get(status, str(status))


def _mode_vi(mode: str) -> str:
    return _MODE_VI.get(mode, mode)


_VERIFICATION = (
    "Bản JSON của báo cáo (report.json) và bản PDF (report.pdf) được ký số (CMS, tách rời: report.json.p7s, "
    "report.pdf.p7s) bằng chứng thư ký số của cơ quan lập báo cáo. Kiểm tra bằng OpenSSL:"
)
_OPENSSL = (
    "openssl cms -verify -binary -inform DER -in report.json.p7s -content report.json -CAfile root-ca.pem -purpose any"
)


def render_pdf(document: dict) -> bytes:
    """The report as a printable A4 PDF in Vietnamese, with the same content as ``render_html``, set in the
    report font (``lienthong.settings.report_font``: fpdf2 embeds the subset it uses)."""
    from fpdf import FPDF
    from fpdf.fonts import FontFace

    from lienthong.settings import report_font

    logging.getLogger("fontTools").setLevel(logging.WARNING)  # it tells of every table of the font it subsets
    pdf = FPDF(format="A4")
    pdf.set_title("Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân")
    pdf.set_author(document["controller"]["organisation"])
    pdf.set_creator("Liên thông")
    pdf.add_font("report", "", str(report_font("Book")))
    pdf.add_font("report", "B", str(report_font("Bold")))
    pdf.set_margins(15, 15, 15)
    pdf.set_auto_page_break(True, 15)
    pdf.add_page()
    width = pdf.epw

    def heading(text: str, size: float) -> None:
        pdf.set_font("report", "B", size)
        pdf.multi_cell(width, size * 0.55, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    def paragraph(text: str, size: float = 9.5) -> None:
        pdf.set_font("report", "", size)
        pdf.multi_cell(width, 5, text, new_x="LMARGIN", new_y="NEXT")
        pdf.ln(2)

    def table(headings: list[str], rows: list[list[str]], widths: tuple[int, ...]) -> None:
        pdf.set_font("report", "", 7.5)
        with pdf.table(col_widths=widths, headings_style=FontFace(emphasis="BOLD", fill_color=(238, 238, 238)),
                       line_height=3.8, text_align="LEFT") as grid:  # fmt: skip
            grid.row(headings)
            for row in rows:
                grid.row(row)
        pdf.ln(3)

    subject, since = document["subject"], document["since"]
    heading("Báo cáo về việc cung cấp, chia sẻ dữ liệu cá nhân", 15)
    paragraph(
        f"Cơ quan lập báo cáo: {document['controller']['organisation']}\n"
        f"Số định danh cá nhân: {subject['personal_id']}\n"
        f"Thời điểm lập: {document['generated_at']}" + (f"\nKể từ ngày: {since}" if since else "")
    )
    paragraph(
        "Theo Luật Bảo vệ dữ liệu cá nhân số 91/2025/QH15, chủ thể dữ liệu có quyền được biết dữ liệu cá nhân của "
        "mình đã được cung cấp cho cơ quan, tổ chức nào. Báo cáo này liệt kê mọi lần Cơ sở dữ liệu quốc gia về dân "
        "cư gửi dữ liệu của công dân cho cơ quan khác qua nền tảng Liên thông, và mọi dữ liệu về công dân mà cơ "
        "quan khác gửi đến."
        + (
            ""
            if subject["in_population_database"]
            else " Số định danh này không có trong Cơ sở dữ liệu quốc gia về dân cư."
        )  # fmt: skip
    )

    def receipt(entry: dict) -> str:
        at = entry["receipt"]["at"]
        return _status_vi(entry["receipt"]["status"]) + (f"\n{at}" if at else "")

    heading("1. Dữ liệu của công dân đã được cung cấp cho", 11)
    if document["disclosures"]:
        rows = [[f"{d['sent_at']}\ngói số {d['sequence']} ({_mode_vi(d['mode'])})", d["partner_organisation"],
                 d["agreement"], "\n".join(d["legal_basis"]), d["purpose"], ", ".join(d["fields"]), receipt(d)]
                for d in document["disclosures"]]  # fmt: skip
        table(["Thời điểm gửi", "Cơ quan nhận", "Thỏa thuận", "Căn cứ pháp lý", "Mục đích", "Trường dữ liệu",
               "Biên nhận"], rows, (14, 16, 12, 22, 16, 18, 12))  # fmt: skip
    else:
        paragraph("Không có lần cung cấp nào.")
    heading("2. Dữ liệu về công dân do cơ quan khác gửi đến", 11)
    if document["received_from_partners"]:
        rows = [[d["received_at"], d["partner_organisation"], d["agreement"], "\n".join(d["legal_basis"]),
                 ", ".join(d["fields"]), str(d["records"]), receipt(d)]
                for d in document["received_from_partners"]]  # fmt: skip
        table(["Thời điểm nhận", "Cơ quan gửi", "Thỏa thuận", "Căn cứ pháp lý", "Trường dữ liệu", "Số bản ghi",
               "Biên nhận"], rows, (14, 16, 12, 26, 20, 8, 12))  # fmt: skip
    else:
        paragraph("Không có dữ liệu nào do cơ quan khác gửi đến.")
    heading("3. Lượt xem toàn bộ hồ sơ của cán bộ quản lý dữ liệu", 11)
    if document["steward_full_views"]:
        rows = [[v["viewed_at"], v["steward"], v["record"], v["purpose"]] for v in document["steward_full_views"]]
        table(["Thời điểm xem", "Cán bộ", "Hồ sơ", "Mục đích"], rows, (20, 20, 30, 30))
    else:
        paragraph("Không có lượt xem nào.")
    heading("Xác thực báo cáo", 11)
    paragraph(_VERIFICATION)
    pdf.set_font("Courier", "", 7.5)
    pdf.multi_cell(width, 4, _OPENSSL, new_x="LMARGIN", new_y="NEXT")
    return bytes(pdf.output())
