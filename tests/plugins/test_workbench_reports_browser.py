"""The workbench's reconciliation, trends and operators pages in a real browser (Debian's Chromium driven by
Playwright) against a real ``airflow api-server`` on loopback, signed in on Airflow's own login page, as
``test_workbench_browser`` does for the quarantine: a steward resolves mismatches and takes the corrections
away, the trend charts render, a run's Data Docs list their runs with nothing fetched from outside, the operators'
page shows partners down, a viewer cannot resolve, and axe-core finds no serious or critical violation.

With ``LIENTHONG_SCREENSHOTS`` set to a folder, the pages are also photographed there."""

from __future__ import annotations

import re
import time
from dataclasses import dataclass
from pathlib import Path
from urllib.parse import urlsplit

import pytest
from sqlalchemy import select

from population.db import session_factory
from tests.feeds.workbench_reports_fixtures import HOSTILE_PARTNER_NAME, ReportsWorld, reports_world
from tests.plugins.test_workbench_browser import (
    api_server,
    no_personal_id,
    photograph,
    signed_in,
)
from validation.models import MismatchResolution

pytestmark = pytest.mark.slow


@dataclass
class Served:
    base: str
    world: ReportsWorld
    log: Path


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, sqlite_template):
    """A real Airflow API server with the plugin, over the reports' world (see ``test_workbench_browser``)."""
    world = reports_world(tmp_path_factory.mktemp("workbench-reports-browser"), sqlite_template)
    var = world.queue.var
    settings = {"LIENTHONG_DB_URL": world.queue.url, "LIENTHONG_VAR_DIR": str(var)}
    try:
        with api_server(var, settings, "/lienthong/mismatches") as (base, log):
            yield Served(base, world, log)
    finally:
        world.engine.dispose()


def offline(page, base: str) -> list[str]:
    """Every request the page makes elsewhere than the API server is recorded and refused."""
    outside: list[str] = []
    host = urlsplit(base).netloc

    def route(request_route):
        url = request_route.request.url
        if urlsplit(url).netloc != host and not url.startswith(("data:", "about:")):
            outside.append(url)
            return request_route.abort()
        return request_route.continue_()

    page.route("**/*", route)
    return outside


def test_a_steward_resolves_mismatches_and_takes_the_partner_s_corrections_away(chromium, airflow):
    page = signed_in(chromium, airflow, "steward")
    page.goto(f"{airflow.base}/lienthong/mismatches?partner=tax")
    assert page.get_by_text(HOSTILE_PARTNER_NAME).count() == 1  # shown as text, not run
    photograph(page, "mismatches")
    unresolved = int(page.locator("#total").inner_text())
    page.get_by_role("link", name="họ tên khác nhau", exact=True).click()
    page.wait_for_url(re.compile(r"mismatch=name_differs"))
    no_personal_id(page.url, airflow.world.queue)
    page.get_by_label(f"Chọn {airflow.world.hostile_mismatch}", exact=True).check()
    page.get_by_role("radio", name="đối tác phải sửa").check()
    page.get_by_label("Lý do (bắt buộc)").fill("Cơ quan thuế nhập sai họ tên")
    page.get_by_role("button", name="Ghi kết quả xử lý").click()
    page.wait_for_url(re.compile(r"resolved=1"))
    assert "Đã ghi kết quả xử lý cho 1 sai lệch" in page.locator(".notice").inner_text()
    audit = page.locator("#resolutions tbody tr")
    assert audit.count() == 1 and "steward" in audit.first.inner_text()
    assert "Cơ quan thuế nhập sai họ tên" in audit.first.inner_text()
    page.goto(f"{airflow.base}/lienthong/mismatches?partner=tax")
    assert int(page.locator("#total").inner_text()) == unresolved - 1
    with page.expect_download() as download:
        page.locator('a[href$="corrections.csv?partner=tax"]').click()
    saved = Path(download.value.path()).read_text(encoding="utf-8")
    assert download.value.suggested_filename.startswith("corrections-tax-")
    assert airflow.world.hostile_personal_id in saved and "'" + HOSTILE_PARTNER_NAME.replace('"', '""') in saved
    with session_factory(airflow.world.engine)() as session:
        recorded = session.scalars(select(MismatchResolution)).all()
    assert [(r.mismatch_id, r.steward) for r in recorded] == [(airflow.world.hostile_mismatch, "steward")]
    page.context.close()


def test_a_viewer_reads_the_mismatches_but_cannot_resolve(chromium, airflow):
    page = signed_in(chromium, airflow, "viewer")
    page.goto(f"{airflow.base}/lienthong/mismatches")
    assert int(page.locator("#total").inner_text()) > 0
    assert page.locator("form").count() == 0 and page.locator("input[type=checkbox]").count() == 0
    assert page.locator('a[href*="corrections.csv"]').count() == 0
    assert page.request.get(f"{airflow.base}/lienthong/mismatches/corrections.csv?partner=tax").status == 403
    page.context.close()


def test_the_trend_charts_render_and_a_run_s_data_docs_work_with_nothing_from_outside(chromium, airflow):
    page = signed_in(chromium, airflow, "steward")
    outside = offline(page, airflow.base)
    page.goto(f"{airflow.base}/lienthong/trends")
    charts = page.locator("svg.chart")
    assert charts.count() >= 6 and charts.first.bounding_box()["height"] > 100
    title = "Điểm bốn chiều chất lượng qua các lần kiểm tra: health-identity"
    assert page.get_by_role("img", name=title, exact=True).count() == 1
    photograph(page, "trends", at="#trend-1")
    page.locator("summary").first.click()  # the table beside the chart
    assert page.locator("details[open] tbody tr").count() == 2  # the health feed's two runs
    checked = page.locator("section.trend", has_text="Bộ dữ liệu: citizen-extract")  # the file's check: Data Docs
    checked.locator("summary").click()
    checked.get_by_role("link", name=re.compile(r"mở báo cáo")).click()
    page.wait_for_url(re.compile(r"/data-docs/index.html"))
    page.wait_for_load_state("networkidle")
    listed = page.locator("tr.clickable-row")  # bootstrap-table builds the lists from the page's data
    photograph(page, "data-docs")
    assert listed.count() >= 2 and page.locator("tr.clickable-row[data-href^='validations/']").count() >= 1
    page.locator("tr.clickable-row[data-href^='validations/']").first.click()
    page.wait_for_url(re.compile(r"/data-docs/validations/"))
    page.wait_for_load_state("networkidle")
    assert "Evaluated Expectations" in page.content()
    assert outside == []
    page.context.close()


def test_the_operators_page_shows_each_feed_and_partners_down_quickly(chromium, airflow):
    page = signed_in(chromium, airflow, "steward")
    started = time.monotonic()
    page.goto(f"{airflow.base}/lienthong/operators")
    assert time.monotonic() - started < 10  # the partners are not running: each check is bounded
    rows = page.locator("#feeds tbody tr")
    assert rows.count() == 5
    assert page.locator(".partner-down").count() == 5  # no partner serves in this test
    assert page.locator("#failures-unavailable").count() == 0  # the API server reads its metadata database
    assert "Không có tác vụ nào lỗi." in page.content()
    photograph(page, "operators")
    page.context.close()


def test_axe_finds_no_serious_or_critical_violation_on_the_new_pages(chromium, airflow):
    from axe_playwright_python.sync_playwright import Axe

    page = signed_in(chromium, airflow, "steward")
    for path in ("mismatches?partner=tax", "mismatches?lang=en", "trends", "operators"):
        page.goto(f"{airflow.base}/lienthong/{path}")
        violations = Axe().run(page).response["violations"]
        serious = [(v["id"], v["impact"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]
        assert serious == [], path
    page.context.close()


def test_no_personal_id_reached_the_api_server_s_log(airflow):
    log = airflow.log.read_text(errors="replace")
    assert "/lienthong/mismatches" in log
    no_personal_id(log, airflow.world.queue)
