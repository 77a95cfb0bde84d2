"""The stewards' workbench in a real browser: Debian's Chromium driven by Playwright, against a real ``airflow
api-server`` on loopback with the simple auth manager's users (a steward, a second steward, a viewer), over a
quarantine filled by the real validation of two feeds. Signing in goes through Airflow's own login page.

With ``LIENTHONG_SCREENSHOTS`` set to a folder, the pages are also photographed there (docs/images/ for
docs/stewards.md: ``LIENTHONG_SCREENSHOTS=docs/images pytest tests/plugins/test_workbench_browser.py``)."""

from __future__ import annotations

import json
import os
import re
import socket
import subprocess
import sys
import time
import urllib.error
import urllib.request
from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import dataclass
from pathlib import Path

import pytest
from sqlalchemy import select

from feeds.workbench.access import csrf_token
from lienthong.airflow_runner import airflow_environment
from population.db import session_factory
from tests.feeds.workbench_fixtures import HOSTILE_NAME, QueueWorld, queue_world
from validation.models import QuarantinedRecord

pytestmark = pytest.mark.slow

USERS = "admin:admin,steward:op,steward2:op,viewer:viewer"
PASSWORDS = {
    "admin": "admin-password",
    "steward": "steward-password",
    "steward2": "steward2-password",
    "viewer": "viewer-password",
}
JWT_SECRET = "the browser tests' JWT secret, also the forms' key"
RULE = "expect_column_values_to_be_nfc(full_name)"
TWELVE_DIGITS = re.compile(r"(?<![\w-])\d{12}(?![\w-])")


@dataclass
class Served:
    base: str
    world: QueueWorld
    log: Path  # the API server's


def free_port() -> int:
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        return probe.getsockname()[1]


def status_of(url: str) -> int:
    try:
        with urllib.request.urlopen(url, timeout=5) as answer:
            return answer.status
    except urllib.error.HTTPError as error:
        return error.code


@contextmanager
def api_server(var: Path, settings: dict[str, str], probe: str) -> Iterator[tuple[str, Path]]:
    """A real Airflow API server (the plugin by its entry point) on a free loopback port, its home under ``var``
    prepared as ``make airflow`` prepares it, with the workbench's users and ``settings`` on top; ready once
    ``probe`` (a path of the plugin's) asks for a sign-in. Yields its base URL and its log."""
    port = free_port()
    home = var / "airflow"
    home.mkdir(parents=True, exist_ok=True)
    (home / "passwords.json").write_text(json.dumps(PASSWORDS))
    base, log_path = f"http://127.0.0.1:{port}", home / "api-server.log"
    env = (
        {k: v for k, v in os.environ.items() if not k.startswith("AIRFLOW")}
        | airflow_environment(var)
        | {
            "AIRFLOW__API__PORT": str(port),
            "AIRFLOW__API__BASE_URL": base,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_USERS": USERS,
            "AIRFLOW__CORE__SIMPLE_AUTH_MANAGER_PASSWORDS_FILE": str(home / "passwords.json"),
            "AIRFLOW__API_AUTH__JWT_SECRET": JWT_SECRET,
        }
        | settings
    )
    subprocess.run(
        [sys.executable, "-m", "lienthong.airflow_runner"], env=env, check=True, timeout=300, capture_output=True
    )
    airflow_command = Path(sys.executable).with_name("airflow")
    with log_path.open("ab") as log:
        server = subprocess.Popen(
            [str(airflow_command), "api-server", "--port", str(port), "--workers", "1"],
            env=env,
            stdout=log,
            stderr=subprocess.STDOUT,
        )
    try:
        deadline = time.monotonic() + 180
        while True:
            try:
                if status_of(f"{base}{probe}") == 401:
                    break
            except OSError:
                pass
            assert server.poll() is None, log_path.read_text()[-3000:]
            assert time.monotonic() < deadline, "the API server did not answer within 180 s"
            time.sleep(1)
        yield base, log_path
    finally:
        server.terminate()
        try:
            server.wait(timeout=30)
        except subprocess.TimeoutExpired:
            server.kill()
            server.wait()


@pytest.fixture(scope="module")
def airflow(tmp_path_factory, sqlite_template):
    """The API server over a quarantine filled by the real validation of two feeds."""
    root = tmp_path_factory.mktemp("workbench-browser")
    world = queue_world(root, sqlite_template)
    try:
        with api_server(root / "var", {"LIENTHONG_DB_URL": world.url}, "/lienthong/quarantine") as (base, log):
            yield Served(base, world, log)
    finally:
        world.engine.dispose()


def signed_in(chromium, airflow: Served, user: str, lang: str | None = None):
    """A fresh browser session of ``user``, signed in on Airflow's login page, on the queue."""
    context = chromium.new_context(viewport={"width": 1280, "height": 900}, locale="vi-VN")
    page = context.new_page()
    page.on("dialog", lambda dialog: pytest.fail(f"a script ran: {dialog.message}"))
    queue = f"{airflow.base}/lienthong/quarantine" + (f"?lang={lang}" if lang else "")
    page.goto(f"{airflow.base}/auth/login?next={queue}")
    page.fill("input[name=username]", user)
    page.fill("input[name=password]", PASSWORDS[user])
    page.click("button[type=submit]")
    page.wait_for_url(lambda url: url.startswith(f"{airflow.base}/lienthong/quarantine"), timeout=30_000)
    return page


def photograph(page, name: str, at: str | None = None) -> None:
    """For docs/stewards.md, when asked (``LIENTHONG_SCREENSHOTS``): the window (from the element ``at``), kept
    small."""
    folder = os.environ.get("LIENTHONG_SCREENSHOTS")
    if folder:
        if at:
            page.locator(at).scroll_into_view_if_needed()
        Path(folder).mkdir(parents=True, exist_ok=True)
        page.screenshot(
            path=str(Path(folder) / f"stewards-{name}.png"), clip={"x": 0, "y": 0, "width": 1280, "height": 760}
        )


def total(page) -> int:
    return int(page.locator("#total").inner_text().replace(",", ""))


def facet_count(page, label: str) -> int:
    item = page.locator(".facets li", has=page.get_by_role("link", name=label, exact=True))
    return int(re.search(r"\((\d+)\)", item.inner_text()).group(1))


def no_personal_id(text: str, world: QueueWorld) -> None:
    assert not TWELVE_DIGITS.search(text) and not [p for p in world.personal_ids if p in text]


def test_a_steward_filters_to_one_expectation_opens_a_record_releases_it_and_sees_the_audit_and_counts(
    chromium, airflow
):
    page = signed_in(chromium, airflow, "steward")
    photograph(page, "queue")
    held, released = total(page), facet_count(page, "đã cho đi")
    page.get_by_role("link", name=RULE, exact=True).click()
    page.wait_for_url(re.compile(r"rule="))
    no_personal_id(page.url, airflow.world)
    with session_factory(airflow.world.engine)() as session:
        expected = [
            r.id
            for r in session.scalars(select(QuarantinedRecord).where(QuarantinedRecord.status == "held"))
            if any(f.rule == RULE for f in r.findings)
        ]
    assert total(page) == len(expected) < held
    assert page.locator("tbody tr").count() == len(expected)
    filtered = page.url

    record_id = airflow.world.held(airflow.world.hostile_id, "health-identity")
    page.get_by_role("link", name=f"Bản ghi {record_id}", exact=True).click()
    page.wait_for_url(f"**/lienthong/quarantine/{record_id}*")
    assert page.get_by_text(HOSTILE_NAME.split(" ", 1)[1]).count() >= 1  # shown as text, not run
    failing = page.locator("tr.failing")
    assert failing.count() >= 1 and "full_name" in failing.first.inner_text()
    assert RULE in page.locator("main").inner_text()
    no_personal_id(page.content(), airflow.world)
    photograph(page, "record")
    page.get_by_role("button", name="Hiện đầy đủ số định danh").click()  # logged first, then shown
    assert page.locator("#personal-id").inner_text() == airflow.world.hostile_id
    assert "Lượt xem đầy đủ này đã được ghi nhật ký." in page.content()

    page.get_by_label("Cho đi").check()
    page.get_by_label("Lý do (bắt buộc)").fill("Tên viết dạng tổ hợp; đã đối chiếu sổ hộ tịch")
    photograph(page, "decide", at="form fieldset")
    page.get_by_role("button", name="Ghi quyết định").click()
    page.wait_for_url(re.compile(r"decided=1"))
    assert "Đã ghi quyết định cho 1 bản ghi: cho đi" in page.locator(".notice").inner_text()
    audit = page.locator("#decisions tbody tr")
    assert audit.count() == 1
    assert "steward" in audit.first.inner_text() and "đã đối chiếu sổ hộ tịch" in audit.first.inner_text()
    assert page.locator("#status").inner_text() == "đã cho đi"

    page.get_by_role("link", name="Quay lại: Hàng đợi cách ly").click()  # back to the queue as it was filtered
    assert page.url == filtered and total(page) == len(expected) - 1
    page.goto(f"{airflow.base}/lienthong/quarantine")
    assert total(page) == held - 1 and facet_count(page, "đã cho đi") == released + 1
    page.context.close()


def test_a_viewer_reads_but_cannot_decide(chromium, airflow):
    page = signed_in(chromium, airflow, "viewer")
    assert total(page) > 0 and page.locator("form").count() == 0
    assert page.locator("input[type=checkbox]").count() == 0
    record_id = airflow.world.held(airflow.world.short_id, "tax-identity")
    page.goto(f"{airflow.base}/lienthong/quarantine/{record_id}")
    assert page.locator("form").count() == 0 and "chỉ cán bộ quản lý dữ liệu được quyết định" in page.content()
    # forged: the viewer's own session cookies, and even a token valid for this viewer's session
    nonce = next(c["value"] for c in page.context.cookies() if c["name"] == "lienthong_csrf")
    form = {"record_id": str(record_id), "decision": "release", "reason": "a viewer tries"}
    for token in ("forged", csrf_token(JWT_SECRET.encode(), "viewer", nonce)):
        answer = page.request.post(
            f"{airflow.base}/lienthong/quarantine/decisions", form=form | {"csrf_token": token}, max_redirects=0
        )
        assert answer.status == 403
    refused = page.request.post(
        f"{airflow.base}/lienthong/quarantine/{record_id}/whole-id",
        form={"csrf_token": csrf_token(JWT_SECRET.encode(), "viewer", nonce)},
    )
    assert refused.status == 403
    with session_factory(airflow.world.engine)() as session:
        assert session.get(QuarantinedRecord, record_id).status == "held"
    page.context.close()


def test_a_second_steward_completes_a_four_eyes_release(chromium, airflow):
    record_id = airflow.world.held(airflow.world.short_id, "health-identity")
    first = signed_in(chromium, airflow, "steward")
    first.goto(f"{airflow.base}/lienthong/quarantine/{record_id}")
    assert "hai cán bộ khác nhau" in first.content()
    first.get_by_label("Cho đi").check()
    first.get_by_label("Lý do (bắt buộc)").fill("Số định danh đúng theo CCCD gốc")
    first.get_by_role("button", name="Ghi quyết định").click()
    first.wait_for_url(re.compile(r"decided=1"))
    assert first.locator("#status").inner_text() == "chờ người duyệt thứ hai"
    first.get_by_label("Cho đi").check()  # the same steward again: refused
    first.get_by_label("Lý do (bắt buộc)").fill("again")
    first.get_by_role("button", name="Ghi quyết định").click()
    assert "second steward" in first.locator("[role=alert]").inner_text()
    first.context.close()

    second = signed_in(chromium, airflow, "steward2", lang="en")
    second.goto(f"{airflow.base}/lienthong/quarantine/{record_id}")
    assert "First released by" in second.content()
    photograph(second, "four-eyes", at="#decisions-heading")
    second.get_by_label("Release").check()
    second.get_by_label("Reason (required)").fill("Checked: the ID is right")
    second.get_by_role("button", name="Record the decision").click()
    second.wait_for_url(re.compile(r"decided=1"))
    assert second.locator("#status").inner_text() == "released"
    stewards = [row.inner_text() for row in second.locator("#decisions tbody tr").all()]
    assert len(stewards) == 2 and "\tsteward\t" in stewards[0] and "steward2" in stewards[1]
    second.context.close()


def test_axe_finds_no_serious_or_critical_violation_on_the_queue_and_a_record(chromium, airflow):
    from axe_playwright_python.sync_playwright import Axe

    page = signed_in(chromium, airflow, "steward")
    record_id = airflow.world.held(airflow.world.hostile_id, "tax-identity")
    for url in (
        f"{airflow.base}/lienthong/quarantine",
        f"{airflow.base}/lienthong/quarantine?lang=en",
        f"{airflow.base}/lienthong/quarantine/{record_id}",
    ):
        page.goto(url)
        violations = Axe().run(page).response["violations"]
        serious = [(v["id"], v["impact"], v["help"]) for v in violations if v["impact"] in ("serious", "critical")]
        assert serious == [], url
    page.context.close()


def test_no_personal_id_reached_the_api_server_s_log(airflow):
    """After the pages above (a whole ID shown among them), Airflow's log of the requests holds none."""
    log = airflow.log.read_text(errors="replace")
    assert "/lienthong/quarantine" in log
    no_personal_id(log, airflow.world)
