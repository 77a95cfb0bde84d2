"""The workbench's reconciliation, trends and operators pages: their data read from a database filled by the real
code paths (validations, reconciliations, a file's check with its Data Docs, receipts in the ledger), and the
pages through the plugin's app: facets and side-by-side values, resolutions with their audit, the corrections
CSV, the charts, the Data Docs served offline and confined to their folder, partners down, failed tasks; roles,
CSRF, escaping of hostile values, no personal ID in a page or a URL."""

from __future__ import annotations

import csv
import io
import json
import os
import re
import shutil
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import func, select

from feeds.workbench import data_docs
from feeds.workbench import mismatches as mismatch_pages
from feeds.workbench import operators as operator_pages
from feeds.workbench import trends as trend_pages
from feeds.workbench.access import csrf_token
from population.db import create_population_engine, session_factory
from tests.feeds.test_workbench import VIEWER, As, no_personal_id
from tests.feeds.workbench_fixtures import QueueWorld
from tests.feeds.workbench_reports_fixtures import HOSTILE_PARTNER_NAME, ReportsWorld, reports_world
from tests.partners.fixtures import (  # noqa: F401 - the sandbox partners, running, with their connections
    citizens,
    key_password_env,
    partners,
    population_engine,
    sandbox,
    sandbox_pki,
)
from validation.models import MismatchResolution, ReconciliationMismatch, ReconciliationRun, ValidationRun
from validation.reconciliation import CORRECTION_COLUMNS, MismatchFilter

OUTSIDE_URL = re.compile(r"https?://(?!www\.w3\.org/)")


@pytest.fixture(scope="module")
def template_world(tmp_path_factory, sqlite_template) -> ReportsWorld:
    world = reports_world(tmp_path_factory.mktemp("workbench-reports"), sqlite_template)
    world.engine.dispose()
    return world


@pytest.fixture
def world(template_world, tmp_path) -> ReportsWorld:
    """A copy of the world for one test: resolutions change it. The Data Docs stay where the run says."""
    path = tmp_path / "population.db"
    shutil.copy(urlsplit(template_world.queue.url).path, path)
    url = f"sqlite:///{path}"
    engine = create_population_engine(url)
    queue = template_world.queue
    yield ReportsWorld(
        QueueWorld(engine, url, queue.var, queue.hostile_id, queue.short_id, queue.personal_ids),
        template_world.docs_run,
        template_world.hostile_mismatch,
        template_world.hostile_personal_id,
    )
    engine.dispose()


@pytest.fixture
def as_(world, monkeypatch):
    monkeypatch.setenv("LIENTHONG_DB_URL", world.queue.url)
    monkeypatch.setenv("LIENTHONG_VAR_DIR", str(world.queue.var))
    session = As()
    yield session
    session.app.dependency_overrides.clear()


def classes_of(world: ReportsWorld, partner: str) -> dict[str, int]:
    with session_factory(world.engine)() as session:
        query = (
            select(ReconciliationMismatch.mismatch, func.count())
            .join(ReconciliationRun, ReconciliationRun.id == ReconciliationMismatch.run_id)
            .where(ReconciliationRun.partner == partner)
            .group_by(ReconciliationMismatch.mismatch)
        )
        return dict(session.execute(query).all())


def mismatch_ids(world: ReportsWorld, partner: str, limit: int) -> list[int]:
    with session_factory(world.engine)() as session:
        query = (
            select(ReconciliationMismatch.id)
            .join(ReconciliationRun, ReconciliationRun.id == ReconciliationMismatch.run_id)
            .where(ReconciliationRun.partner == partner, ReconciliationMismatch.id != world.hostile_mismatch)
            .order_by(ReconciliationMismatch.id)
            .limit(limit)
        )
        return list(session.scalars(query))


# -- reconciliation: the page's data -----------------------------------------------------------------------------


def test_the_mismatch_page_counts_each_partner_s_classes_and_masks_personal_ids(world):
    with session_factory(world.engine)() as session:
        page = mismatch_pages.mismatch_page(session, MismatchFilter(partner="tax"), base="/m")
    classes = classes_of(world, "tax")
    assert {v.value: v.count for v in page.facets["mismatch"]} == classes
    assert page.total == sum(classes.values()) == len(page.rows)  # fewer than a page
    assert {v.value: v.count for v in page.facets["partner"]}["health"] == sum(classes_of(world, "health").values())
    assert {v.value: v.count for v in page.facets["resolution"]}["unresolved"] == page.total
    hostile = next(row for row in page.rows if row.id == world.hostile_mismatch)
    assert (hostile.mismatch, hostile.partner_value) == ("name_differs", HOSTILE_PARTNER_NAME)
    assert hostile.population_value and hostile.population_value != hostile.partner_value
    assert hostile.personal_id == world.hostile_personal_id[:3] + "******" + world.hostile_personal_id[-3:]
    for row in page.rows:
        no_personal_id(" ".join(map(str, vars(row).values())), world.queue)


def test_a_class_filter_narrows_the_rows_and_pages_go_by_id(world, monkeypatch):
    classes = classes_of(world, "tax")
    chosen = max(classes, key=classes.get)
    monkeypatch.setattr(mismatch_pages, "PAGE_SIZE", 2)
    where = mismatch_pages.mismatch_filter({"partner": "tax", "mismatch": chosen})
    with session_factory(world.engine)() as session:
        first = mismatch_pages.mismatch_page(session, where, base="/m")
        assert first.total == classes[chosen] and {r.mismatch for r in first.rows} == {chosen}
        assert first.next_href and f"after={first.rows[-1].id}" in first.next_href
        second = mismatch_pages.mismatch_page(session, where, first.rows[-1].id, base="/m")
    assert second.rows and second.rows[0].id > first.rows[-1].id and second.first_href


@pytest.mark.parametrize(
    "query",
    [{"partner": "<script>"}, {"mismatch": "matched'"}, {"resolution": "maybe"}, {"run": "1 OR 1=1"}],
)
def test_a_filter_it_does_not_know_is_refused(query):
    with pytest.raises(mismatch_pages.BadFilter):
        mismatch_pages.mismatch_filter(query)


# -- reconciliation: through the plugin --------------------------------------------------------------------------


def test_the_mismatches_page_shows_both_values_side_by_side_escaped_in_vietnamese(as_, world):
    page = as_.get("/mismatches?partner=tax")
    assert page.status_code == 200 and "default-src 'none'" in page.headers["content-security-policy"]
    assert '<html lang="vi">' in page.text and "Đối soát với cơ quan đối tác" in page.text
    assert ">Loại sai lệch</h3>" in page.text and ">Tình trạng xử lý</h3>" in page.text
    assert ">họ tên khác nhau</a>" in page.text and ">chưa xử lý</a>" in page.text
    assert f'<span id="total">{sum(classes_of(world, "tax").values())}</span>' in page.text
    assert "<script" not in page.text and "&lt;script&gt;alert(2)&lt;/script&gt;" in page.text
    row = re.search(rf'value="{world.hostile_mismatch}".*?</tr>', page.text, re.S).group(0)
    assert 'class="partner-value">=HYPERLINK(&#34;' in row and 'class="population-value">' in row
    no_personal_id(page.text, world.queue)
    for link in re.findall(r'href="([^"]+)"', page.text):
        no_personal_id(link, world.queue)
    english = as_.get("/mismatches?partner=tax&lang=en")
    assert "Reconciliation with the partners" in english.text and ">name differs</a>" in english.text


def test_a_steward_resolves_two_mismatches_with_a_reason_recorded_under_the_signed_in_name(as_, world):
    chosen = mismatch_ids(world, "tax", 2)
    form = {"mismatch_id": [str(i) for i in chosen], "resolution": "partner_must_correct"}
    form |= {"reason": "Cơ quan thuế ghi sai", "csrf_token": as_.token("/mismatches"), "steward": "someone else"}
    answer = as_.post("/mismatches/resolutions", form | {"back": "/lienthong/mismatches?partner=tax"})
    assert answer.status_code == 303 and answer.headers["location"] == "/lienthong/mismatches?partner=tax&resolved=2"
    with session_factory(world.engine)() as session:
        recorded = session.scalars(select(MismatchResolution)).all()
    assert sorted(r.mismatch_id for r in recorded) == chosen
    assert {(r.resolution, r.steward, r.reason) for r in recorded} == {
        ("partner_must_correct", "steward", "Cơ quan thuế ghi sai")
    }
    page = as_.get(answer.headers["location"].removeprefix("/lienthong"))
    assert "Đã ghi kết quả xử lý cho 2 sai lệch" in page.text
    assert f'<span id="total">{sum(classes_of(world, "tax").values()) - 2}</span>' in page.text  # unresolved
    audit = re.search(r'<table aria-labelledby="audit-heading" id="resolutions">.*?</table>', page.text, re.S)
    assert audit and audit.group(0).count("Cơ quan thuế ghi sai") == 2 and "đối tác phải sửa" in audit.group(0)
    assert "(UTC+7)" in audit.group(0)


def test_a_resolution_needs_a_reason_a_known_resolution_and_the_session_s_token(as_, world):
    one = str(mismatch_ids(world, "tax", 1)[0])
    token = as_.token("/mismatches")
    base = {"mismatch_id": one, "resolution": "escalate", "reason": "why", "csrf_token": token}
    assert as_.post("/mismatches/resolutions", base | {"reason": "  "}).status_code == 400
    assert as_.post("/mismatches/resolutions", base | {"resolution": "ignore"}).status_code == 400
    assert as_.post("/mismatches/resolutions", base | {"csrf_token": "forged"}).status_code == 403
    assert as_.post("/mismatches/resolutions", {k: v for k, v in base.items() if k != "csrf_token"}).status_code == 403
    assert as_.post("/mismatches/resolutions", base | {"mismatch_id": "999999"}).status_code == 409
    with session_factory(world.engine)() as session:
        assert session.scalar(select(func.count()).select_from(MismatchResolution)) == 0


def test_a_viewer_reads_the_mismatches_but_neither_resolves_nor_takes_the_corrections(as_, world):
    as_.user = VIEWER
    page = as_.get("/mismatches")
    assert page.status_code == 200 and 'name="mismatch_id"' not in page.text and "<form" not in page.text
    assert "corrections.csv" not in page.text
    form = {"mismatch_id": str(mismatch_ids(world, "tax", 1)[0]), "resolution": "escalate", "reason": "r"}
    from plugins.airflow_lienthong import _csrf_secret

    token = csrf_token(_csrf_secret(), "viewer", as_.client.cookies.get("lienthong_csrf"))  # their own, valid
    assert as_.post("/mismatches/resolutions", form | {"csrf_token": token}).status_code == 403
    assert as_.get("/mismatches/corrections.csv?partner=tax").status_code == 403


def test_the_corrections_csv_lists_what_the_partner_must_correct_with_formulas_neutralised(as_, world):
    chosen = [world.hostile_mismatch, *mismatch_ids(world, "tax", 1)]
    form = {"mismatch_id": [str(i) for i in chosen], "resolution": "partner_must_correct", "reason": "sai tên"}
    assert as_.post("/mismatches/resolutions", form | {"csrf_token": as_.token("/mismatches")}).status_code == 303
    page = as_.get("/mismatches?partner=tax")
    assert "/lienthong/mismatches/corrections.csv?partner=tax" in page.text
    answer = as_.get("/mismatches/corrections.csv?partner=tax")
    assert answer.status_code == 200 and answer.headers["content-type"].startswith("text/csv")
    assert re.fullmatch(r'attachment; filename="corrections-tax-\d{8}\.csv"', answer.headers["content-disposition"])
    rows = list(csv.reader(io.StringIO(answer.text)))
    assert rows[0] == list(CORRECTION_COLUMNS) and len(rows) == 3
    hostile = next(r for r in rows[1:] if r[0] == world.hostile_personal_id)  # whole: the partner's own record
    assert hostile[2] == "name_differs" and hostile[3] == "'" + HOSTILE_PARTNER_NAME
    assert as_.get("/mismatches/corrections.csv?partner=health").text.count("\n") == 1  # the header only
    assert as_.get("/mismatches/corrections.csv?partner=nobody").status_code == 400


# -- trends ------------------------------------------------------------------------------------------------------


def test_trends_group_runs_by_feed_or_dataset_with_scores_and_quarantine_rates(world):
    with session_factory(world.engine)() as session:
        found = {t.key: t for t in trend_pages.trends(session)}
        runs = {r.id: r for r in session.scalars(select(ValidationRun))}
    assert {"health-identity", "tax-identity", "citizen-extract"} <= set(found)
    assert found["tax-identity"].is_feed and not found["citizen-extract"].is_feed
    for trend in found.values():
        for point in trend.runs:
            run = runs[point.id]
            assert (run.agreement or run.dataset) == trend.key
            assert point.quarantine_rate == pytest.approx(run.quarantined / run.rows)
            assert point.scores["sạch"] == run.score_sach
    assert [p.has_report for p in found["citizen-extract"].runs] == [True]


def test_a_chart_has_a_title_a_description_and_escapes_what_it_is_given():
    chart = trend_pages.line_chart(
        "c<1>", "<script>title</script>", "desc & more", {"a": [0.5, None, 0.9, 1.0]}, {"a": ("#000", "")}, {"a": "<b>"}
    )
    assert chart.startswith('<svg id="c&lt;1&gt;" class="chart" role="img"')
    assert '<title id="c&lt;1&gt;-title">&lt;script&gt;title&lt;/script&gt;</title>' in chart
    assert '<desc id="c&lt;1&gt;-desc">desc &amp; more</desc>' in chart and "&lt;b&gt;" in chart
    assert chart.count("<circle") == 1 and chart.count("<polyline") == 1  # a gap after the first run
    assert trend_pages.rate_scale([0.004, 0.03]) == 0.05 and trend_pages.rate_scale([]) == 0.01


def test_the_trends_page_draws_each_feed_s_charts_with_a_table_and_each_partner_s_lag(as_, world):
    page = as_.get("/trends")
    assert page.status_code == 200 and "Xu hướng chất lượng dữ liệu" in page.text
    assert "Luồng dữ liệu: tax-identity" in page.text and "Bộ dữ liệu: citizen-extract" in page.text
    assert page.text.count("<svg") >= 6 and page.text.count('role="img"') == page.text.count("<svg")
    assert '<title id="scores-0-title">Điểm bốn chiều chất lượng qua các lần kiểm tra:' in page.text
    assert "<summary>Số liệu từng lần kiểm tra</summary>" in page.text
    assert f'href="/lienthong/runs/{world.docs_run}/data-docs/index.html"' in page.text
    freshness = re.search(r'<tr id="freshness-health-identity">.*?</tr>', page.text, re.S).group(0)
    assert "outbound-2-package" in freshness and "chấp nhận" in freshness and "(UTC+7)" in freshness
    assert re.search(r'<tr id="freshness-tax-identity">.*?không có', page.text, re.S)  # no receipt yet
    assert "<script" not in page.text
    no_personal_id(page.text, world.queue)
    assert "Data quality trends" in as_.get("/trends?lang=en").text


def test_partner_freshness_takes_the_lag_from_the_overview_and_the_last_receipt_from_the_ledger(world):
    from feeds.overview import exchange_overview

    overview = exchange_overview(world.engine, world.queue.var)
    with session_factory(world.engine)() as session:
        receipts = trend_pages.last_receipts(session)
    now = datetime.now(UTC) + timedelta(hours=2)
    rows = {r.agreement: r for r in trend_pages.partner_freshness(overview, receipts, now)}
    lags = {a.agreement: a.outbound.lag for a in overview.agreements if a.outbound}
    assert {name: row.lag for name, row in rows.items()} == lags
    assert rows["health-identity"].last_receipt.package_id == "outbound-2-package"
    assert 7_000 < rows["health-identity"].last_receipt_age_s < 7_400
    assert rows["tax-identity"].last_receipt is None and rows["tax-identity"].last_receipt_age_s is None
    assert trend_pages.duration(7_200, "vi") == "2.0 giờ" and trend_pages.duration(7_200, "en") == "2.0 h"
    assert trend_pages.duration(None, "en") == "—" and trend_pages.duration(5, "vi") == "5 giây"


# -- Data Docs ---------------------------------------------------------------------------------------------------


def test_a_run_s_data_docs_are_served_with_their_assets_local_and_no_outside_address(as_, world):
    index = as_.get(f"/runs/{world.docs_run}/data-docs/index.html")
    assert index.status_code == 200 and index.headers["content-type"].startswith("text/html")
    assert "script-src 'self' 'unsafe-inline'" in index.headers["content-security-policy"]
    assert not OUTSIDE_URL.search(index.text)
    assert '<script src="/lienthong/data-docs-assets/jquery-3.7.1.min.js">' in index.text
    assert "/lienthong/data-docs-assets/bootstrap-table-1.19.1/bootstrap-table.min.js" in index.text
    for asset in re.findall(r'(?:src|href)="/lienthong/(data-docs-assets/[^"]+)"', index.text):
        served = as_.get(f"/{asset}")
        assert served.status_code == 200, asset
    assert (
        as_.get("/data-docs-assets/jquery-3.7.1.min.js")
        .headers["content-type"]
        .startswith(("text/javascript", "application/javascript"))
    )
    pages = re.findall(r"'_table_row_link_path': '(validations/[^']+\.html)'", index.text)  # the table's data
    assert pages, "the index links the run's validation page"
    served = [as_.get(f"/runs/{world.docs_run}/data-docs/{page}") for page in pages]  # names %-encoded
    assert [answer.status_code for answer in served] == [200] * len(pages)
    assert not [answer for answer in served if OUTSIDE_URL.search(answer.text)]
    text = "".join(answer.text for answer in served)
    assert "Ngu****" in text and "alert(1)" not in text  # failing values' samples are masked, the hostile name too
    css = as_.get(f"/runs/{world.docs_run}/data-docs/static/styles/data_docs_default_styles.css")
    assert css.status_code == 200 and not OUTSIDE_URL.search(css.text)
    assert as_.get(f"/runs/{world.docs_run}/data-docs/static/images/logo-long.png").status_code == 200


def test_data_docs_are_confined_to_the_run_s_report_folder(as_, world, tmp_path):
    with session_factory(world.engine)() as session:
        report = session.get(ValidationRun, world.docs_run).report
    folder = data_docs.docs_folder(report)
    (tmp_path / "secret.html").write_text("<p>secret</p>")
    (folder / "out.html").symlink_to(tmp_path / "secret.html")
    try:
        for asked in (
            "../summary.json",
            "static/../../summary.json",
            "/etc/passwd",
            str(tmp_path / "secret.html"),
            "out.html",
            "static",
            "..\\summary.json",
        ):
            with pytest.raises(data_docs.NotServed):
                data_docs.confined(folder, asked)
        run = world.docs_run
        for path in (
            f"/runs/{run}/data-docs/%2e%2e/summary.json",
            f"/runs/{run}/data-docs/..%2fsummary.json",
            f"/runs/{run}/data-docs/%2Fetc%2Fpasswd",
            f"/runs/{run}/data-docs/out.html",
            f"/runs/{run}/data-docs/static/..%2f..%2f..%2fpopulation.db",
        ):
            answer = as_.get(path)
            assert answer.status_code == 404 and "secret" not in answer.text, path
    finally:
        (folder / "out.html").unlink()
    with session_factory(world.engine)() as session:
        no_report = session.scalar(select(ValidationRun.id).where(ValidationRun.report.is_(None)))
    assert as_.get(f"/runs/{no_report}/data-docs/index.html").status_code == 404
    assert as_.get("/runs/999999/data-docs/index.html").status_code == 404
    assert as_.get("/data-docs-assets/../README.md").status_code == 404
    assert as_.get("/data-docs-assets/README.md").status_code == 404


# -- operators ---------------------------------------------------------------------------------------------------


def slow_check(agreement):
    if agreement.partner == "land":
        time.sleep(5)
        return True, "too late"
    if agreement.partner == "business":
        raise ConnectionRefusedError("connection refused")
    return True, f"reached {agreement.partner}"


def test_partner_checks_answer_within_their_timeout_and_a_silent_partner_is_down():
    from exchange.agreements import load_agreements

    checks = operator_pages.PartnerChecks(slow_check, timeout_s=0.5)
    started = time.monotonic()
    states = checks.states(load_agreements().values())
    assert time.monotonic() - started < 2
    by_partner = {a.partner: states[a.name] for a in load_agreements().values()}
    assert by_partner["health"].up and by_partner["health"].message == "reached health"
    assert not by_partner["business"].up and "ConnectionRefusedError" in by_partner["business"].message
    assert not by_partner["land"].up and by_partner["land"].message == "no answer within 0.5 s"
    again = time.monotonic()
    checks.states(load_agreements().values())  # land's check still runs: not asked twice, not waited for again
    assert time.monotonic() - again < 1


@pytest.mark.slow
def test_the_hooks_find_the_sandbox_partners_up_and_a_stopped_one_down(partners):  # noqa: F811 - the fixture
    from exchange.agreements import load_agreements

    agreements = load_agreements().values()
    states = operator_pages.PartnerChecks(timeout_s=10).states(agreements)
    assert {name: state.up for name, state in states.items()} == {a.name: True for a in agreements}, states
    partners.partners["tax"].stop()  # started again by the fixture
    started = time.monotonic()
    states = operator_pages.PartnerChecks(timeout_s=2).states(agreements)
    assert time.monotonic() - started < 3
    assert [name for name, state in states.items() if not state.up] == ["tax-identity"], states


def test_the_operators_page_shows_each_feed_its_partner_down_and_the_failures_with_their_log(as_, world, monkeypatch):
    failed_at = datetime.now(UTC) - timedelta(hours=1)
    failures = [
        operator_pages.Failure(
            "tax-identity.outbound", "deliver", "scheduled__2026-07-02T00:00:00+00:00", -1, 2, failed_at, "tax-identity"
        ),
        operator_pages.Failure("ledger.audit", "audit", "manual__1", 3, 1, failed_at, None),
    ]
    monkeypatch.setattr(operator_pages, "_checks", operator_pages.PartnerChecks(slow_check, timeout_s=0.5))
    monkeypatch.setattr("feeds.workbench.report_views._airflow_failures", lambda agreements, since: failures)
    page = as_.get("/operators")
    assert page.status_code == 200 and "Vận hành các luồng trao đổi" in page.text
    land = re.search(r'<tr id="feed-land-owners">.*?</tr>', page.text, re.S).group(0)
    assert "không kết nối được" in land and "no answer within 0.5 s" in land
    business = re.search(r'<tr id="feed-business-people">.*?</tr>', page.text, re.S).group(0)
    assert "không kết nối được" in business and "ConnectionRefusedError" in business
    health = re.search(r'<tr id="feed-health-identity">.*?</tr>', page.text, re.S).group(0)
    assert "hoạt động" in health and "outbound-2-package" not in health  # the ledger's receipt, not a package
    tax = re.search(r'<tr id="feed-tax-identity">.*?</tr>', page.text, re.S).group(0)
    assert re.search(r"<td>1</td>\s*</tr>", tax)  # one failure
    assert 'href="/dags/tax-identity.outbound/runs/scheduled__2026-07-02T00%3A00%3A00%2B00%3A00/tasks/deliver' in (
        page.text
    )
    assert 'href="/dags/ledger.audit/runs/manual__1/tasks/audit/mapped/3?try_number=1"' in page.text
    assert "<script" not in page.text
    no_personal_id(page.text, world.queue)


def test_the_operators_page_says_so_when_airflow_s_task_history_cannot_be_read(as_, monkeypatch):
    def unreadable(agreements, since):
        raise RuntimeError("no metadata database /secret/path")

    monkeypatch.setattr(operator_pages, "_checks", operator_pages.PartnerChecks(slow_check, timeout_s=0.2))
    monkeypatch.setattr("feeds.workbench.report_views._airflow_failures", unreadable)
    page = as_.get("/operators?lang=en")
    assert page.status_code == 200 and "Airflow&#39;s task history cannot be read here: RuntimeError" in page.text
    assert "/secret/path" not in page.text and 'id="feeds"' in page.text


# -- every page asks for a signed-in user ------------------------------------------------------------------------


def test_every_new_page_asks_for_a_signed_in_airflow_user(world):
    from fastapi.testclient import TestClient

    from plugins.airflow_lienthong import app

    anonymous = TestClient(app)
    for path in (
        "/mismatches",
        "/mismatches/corrections.csv?partner=tax",
        "/trends",
        "/operators",
        f"/runs/{world.docs_run}/data-docs/index.html",
        "/data-docs-assets/jquery-3.7.1.min.js",
    ):
        assert anonymous.get(path).status_code == 401, path
    assert anonymous.post("/mismatches/resolutions", data={"mismatch_id": "1"}).status_code == 401


FAILING_DAG = """
from datetime import datetime

from airflow.sdk import dag, task


@dag(dag_id="tax-identity.outbound", schedule=None, start_date=datetime(2026, 1, 1), catchup=False)
def failing():
    @task
    def deliver():
        raise RuntimeError("the partner refused")

    deliver()


failing()
"""
READ_FAILURES = """
import json
from datetime import UTC, datetime, timedelta

from feeds.workbench.operators import airflow_failures

found = airflow_failures(["tax-identity"], datetime.now(UTC) - timedelta(hours=24))
print(json.dumps([(f.dag_id, f.task_id, f.agreement, f.log_path()) for f in found]))
"""


@pytest.mark.slow
def test_failures_are_read_from_airflow_s_metadata_database_with_airflow_s_models(tmp_path):
    """A DAG run that failed in a real Airflow metadata database (``airflow dags test``), read back as the API
    server reads it, in processes of their own (Airflow reads its configuration once)."""
    (tmp_path / "dags").mkdir()
    (tmp_path / "dags" / "failing.py").write_text(FAILING_DAG)
    env = {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")} | {
        "AIRFLOW_HOME": str(tmp_path),
        "AIRFLOW__CORE__DAGS_FOLDER": str(tmp_path / "dags"),
        "AIRFLOW__CORE__LOAD_EXAMPLES": "False",
    }
    airflow = str(Path(sys.executable).with_name("airflow"))
    subprocess.run([airflow, "db", "migrate"], env=env, check=True, capture_output=True, timeout=300)
    test = subprocess.run([airflow, "dags", "test", "tax-identity.outbound"], env=env, capture_output=True, timeout=300)
    assert test.returncode != 0  # the DAG run failed, as it should
    read = subprocess.run([sys.executable, "-c", READ_FAILURES], env=env, capture_output=True, timeout=120, text=True)
    assert read.returncode == 0, read.stderr[-2000:]
    (dag_id, task_id, agreement, log_path), *others = json.loads(read.stdout.strip().splitlines()[-1])
    assert (dag_id, task_id, agreement, others) == ("tax-identity.outbound", "deliver", "tax-identity", [])
    assert re.fullmatch(r"dags/tax-identity\.outbound/runs/manual__[^/?]+/tasks/deliver\?try_number=1", log_path)
