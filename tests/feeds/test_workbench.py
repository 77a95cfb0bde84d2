"""The stewards' workbench through the plugin's app (``TestClient``), over a quarantine filled by the real
validation of two feeds: the queue and its facets, a record with its failing fields, decisions with their audit,
four eyes, full views logged first, roles, CSRF, escaping, no personal ID in any URL, both languages."""

from __future__ import annotations

import re
import shutil
from types import SimpleNamespace
from urllib.parse import urlsplit

import pytest
from fastapi import FastAPI
from fastapi.testclient import TestClient
from sqlalchemy import func, select

from feeds.workbench.access import STEWARD_VIEW, Visitor, check_csrf, csrf_token, visitor
from population.db import create_population_engine, session_factory
from population.disclosures import StewardView
from tests.feeds.workbench_fixtures import QueueWorld, queue_world
from validation.models import QuarantinedRecord, StewardDecision

TWELVE_DIGITS = re.compile(r"(?<![\w-])\d{12}(?![\w-])")
CSRF = re.compile(r'name="csrf_token" value="([^"]+)"')
STEWARD, SECOND, VIEWER = (
    Visitor("steward", True, True),
    Visitor("steward2", True, True),
    Visitor("viewer", True, False),
)
RULE = "expect_column_values_to_be_nfc(full_name)"


@pytest.fixture(scope="module")
def template_world(tmp_path_factory, sqlite_template) -> QueueWorld:
    world = queue_world(tmp_path_factory.mktemp("workbench-world"), sqlite_template)
    world.engine.dispose()
    return world


@pytest.fixture
def world(template_world, tmp_path) -> QueueWorld:
    """A copy of the validated world for one test: decisions change it."""
    path = tmp_path / "population.db"
    shutil.copy(urlsplit(template_world.url).path, path)
    url = f"sqlite:///{path}"
    engine = create_population_engine(url)
    yield QueueWorld(
        engine, url, tmp_path / "var", template_world.hostile_id, template_world.short_id, template_world.personal_ids
    )
    engine.dispose()


class As:
    """The plugin's app with a signed-in user whose role the test chooses (``as_.user = VIEWER``)."""

    def __init__(self) -> None:
        from plugins.airflow_lienthong import app, signed_in, workbench_visitor

        self.app, self.user = app, STEWARD
        app.dependency_overrides[signed_in] = lambda: None
        app.dependency_overrides[workbench_visitor] = lambda: self.user
        airflow = FastAPI()  # mounted as Airflow's API server mounts it: the pages' links carry the prefix
        airflow.mount("/lienthong", app)
        self.client = TestClient(airflow, base_url="http://testserver/lienthong")

    def get(self, path: str, **kwargs):
        return self.client.get(path, **kwargs)

    def token(self, path: str = "/quarantine") -> str:
        return CSRF.search(self.get(path).text).group(1)

    def post(self, path: str, data: dict, **kwargs):
        return self.client.post(path, data=data, follow_redirects=False, **kwargs)


@pytest.fixture
def as_(world, monkeypatch):
    monkeypatch.setenv("LIENTHONG_DB_URL", world.url)
    monkeypatch.setenv("LIENTHONG_VAR_DIR", str(world.var))
    session = As()
    yield session
    session.app.dependency_overrides.clear()


def no_personal_id(text: str, world: QueueWorld) -> None:
    assert not TWELVE_DIGITS.search(text)
    assert not [p for p in world.personal_ids if p in text]


def counts(world: QueueWorld) -> dict[str, int]:
    with session_factory(world.engine)() as session:
        query = select(QuarantinedRecord.status, func.count()).group_by(QuarantinedRecord.status)
        return dict(session.execute(query).all())


def test_the_queue_lists_the_held_records_with_counts_per_facet_in_vietnamese(as_, world):
    page = as_.get("/quarantine")
    assert page.status_code == 200 and page.headers["content-type"].startswith("text/html")
    assert "default-src 'none'" in page.headers["content-security-policy"]
    assert '<html lang="vi">' in page.text and "Hàng đợi cách ly" in page.text
    held = counts(world)["held"]
    assert f'<span id="total">{held}</span>' in page.text
    for facet in ("Thỏa thuận", "Chiều chất lượng", "Mức độ", "Quy tắc kiểm tra", "Tỉnh, thành phố", "Trạng thái"):
        assert f">{facet}</h3>" in page.text
    assert "health-identity</a>" in page.text and "tax-identity</a>" in page.text
    assert ">sạch</a>" in page.text and "chặn (cần hai người duyệt)" in page.text
    assert "(UTC+7)" in page.text
    no_personal_id(page.text, world)
    for link in re.findall(r'href="([^"]+)"', page.text):
        no_personal_id(link, world)


def test_english_on_asking_and_kept_in_a_cookie(as_):
    english = as_.get("/quarantine?lang=en")
    assert '<html lang="en">' in english.text and "Quarantine queue" in english.text
    assert "Quarantine queue" in as_.get("/quarantine").text  # the cookie keeps the choice
    assert "Hàng đợi cách ly" in as_.get("/quarantine?lang=vi").text


def test_a_filter_on_one_expectation_narrows_the_queue_and_the_other_facets(as_, world):
    page = as_.get("/quarantine", params={"rule": RULE})
    assert page.status_code == 200
    with session_factory(world.engine)() as session:
        ids = [r for r in session.scalars(select(QuarantinedRecord)) if any(f.rule == RULE for f in r.findings)]
    assert f'<span id="total">{len(ids)}</span>' in page.text
    shown = {int(i) for i in re.findall(r'name="record_id" value="(\d+)"', page.text)}
    assert shown == {r.id for r in ids}
    assert re.search(r'aria-current="true">' + re.escape(RULE) + "</a>", page.text)  # the chosen value marked
    assert "(<a href" in page.text and "bỏ lọc" in page.text  # and a link that clears it


def test_a_record_page_marks_the_failing_fields_and_escapes_a_hostile_name(as_, world):
    record_id = world.held(world.hostile_id, "health-identity")
    page = as_.get(f"/quarantine/{record_id}")
    assert page.status_code == 200
    assert "<script" not in page.text and "&lt;script&gt;alert(1)&lt;/script&gt;" in page.text
    assert '<tr class="failing">' in page.text and "<code>full_name</code>" in page.text
    assert f'<code class="rule">{RULE}</code>' in page.text
    assert "Unicode dựng sẵn (NFC)" in page.text  # the rule in plain words
    assert "Dữ liệu phải sạch" in page.text  # and its dimension
    assert world.hostile_id not in page.text and f"{world.hostile_id[:3]}******{world.hostile_id[-3:]}" in page.text
    no_personal_id(page.text, world)
    assert as_.get("/quarantine/999999").status_code == 404


def test_a_steward_releases_a_record_and_the_audit_names_the_signed_in_user(as_, world):
    record_id = world.held(world.hostile_id, "health-identity")
    before = counts(world)
    token = as_.token(f"/quarantine/{record_id}")
    answer = as_.post(
        "/quarantine/decisions",
        {
            "csrf_token": token,
            "record_id": str(record_id),
            "decision": "release",
            "reason": "checked <b>with</b> the register",
            "steward": "mallory",
            "back": f"/lienthong/quarantine/{record_id}",
        },
    )
    assert answer.status_code == 303, answer.text
    assert answer.headers["location"] == f"/lienthong/quarantine/{record_id}?decided=1&decision=release"
    with session_factory(world.engine)() as session:
        [decision] = session.scalars(select(StewardDecision).where(StewardDecision.record_id == record_id)).all()
    assert (decision.steward, decision.decision, decision.scope) == ("steward", "release", "feed")
    assert counts(world)["held"] == before["held"] - 1 and counts(world)["released"] == 1
    page = as_.get(f"/quarantine/{record_id}?decided=1&decision=release")
    assert "Đã ghi quyết định cho 1 bản ghi: cho đi" in page.text
    assert "checked &lt;b&gt;with&lt;/b&gt; the register" in page.text and "<td>steward</td>" in page.text
    assert 'name="decision"' not in page.text  # decided: no form any more
    other = world.held(world.hostile_id, "tax-identity")  # per feed: the tax feed still holds them
    assert as_.get(f"/quarantine/{other}").text.count("đang giữ") >= 1


def test_many_records_at_once_and_for_all_feeds(as_, world):
    health = world.held(world.hostile_id, "health-identity")
    token = as_.token()
    answer = as_.post(
        "/quarantine/decisions",
        {
            "csrf_token": token,
            "record_id": [str(health)],
            "decision": "reject",
            "reason": "wrong at the source",
            "all_feeds": "on",
            "back": "/lienthong/quarantine?status=held",
        },
    )
    assert answer.status_code == 303
    assert answer.headers["location"] == "/lienthong/quarantine?status=held&decided=2&decision=reject"
    assert counts(world)["rejected"] == 2  # the tax feed's record of the same person too
    assert "2 bản ghi: từ chối" in as_.get(answer.headers["location"].removeprefix("/lienthong")).text


def test_a_decision_needs_a_reason_and_an_open_redirect_goes_nowhere(as_, world):
    record_id = world.held(world.hostile_id, "health-identity")
    token = as_.token()
    answer = as_.post(
        "/quarantine/decisions",
        {"csrf_token": token, "record_id": str(record_id), "decision": "release", "reason": "  "},
    )
    assert answer.status_code == 400 and "reason" in answer.text
    answer = as_.post(
        "/quarantine/decisions",
        {
            "csrf_token": token,
            "record_id": str(record_id),
            "decision": "reject",
            "reason": "r",
            "back": "https://evil.example/",
        },
    )
    assert answer.status_code == 303 and answer.headers["location"].startswith("/lienthong/quarantine?")


def test_a_post_without_the_sessions_token_is_refused(as_, world):
    record_id = world.held(world.hostile_id, "health-identity")
    form = {"record_id": str(record_id), "decision": "release", "reason": "forged"}
    assert as_.post("/quarantine/decisions", form).status_code == 403  # no token, no nonce cookie
    stewards = as_.token()  # the nonce cookie is set now, and this is the steward's token for it
    assert as_.post("/quarantine/decisions", form | {"csrf_token": "0" * 64}).status_code == 403
    assert as_.post("/quarantine/decisions", form).status_code == 403  # the cookie alone is not enough
    as_.client.cookies.clear()
    assert as_.post("/quarantine/decisions", form | {"csrf_token": stewards}).status_code == 403  # nor the token
    stewards = as_.token()  # a fresh nonce, and the steward's token for it
    as_.user = SECOND  # the same browser and nonce, another user: the steward's token is worth nothing to them
    assert as_.post("/quarantine/decisions", form | {"csrf_token": stewards}).status_code == 403
    assert as_.post(f"/quarantine/{record_id}/whole-id", {}).status_code == 403
    assert counts(world) == {"held": counts(world)["held"]} and not world_views(world)


def world_views(world: QueueWorld) -> list:
    with session_factory(world.engine)() as session:
        return session.scalars(select(StewardView)).all()


def test_a_viewer_reads_but_has_no_form_and_a_forged_post_is_refused(as_, world):
    as_.user = VIEWER
    record_id = world.held(world.hostile_id, "health-identity")
    queue, record = as_.get("/quarantine"), as_.get(f"/quarantine/{record_id}")
    assert queue.status_code == record.status_code == 200
    for page in (queue, record):
        assert "<form" not in page.text and "chỉ cán bộ quản lý dữ liệu được quyết định" in page.text
    nonce = as_.client.cookies.get("lienthong_csrf")
    from plugins.airflow_lienthong import _csrf_secret

    token = csrf_token(_csrf_secret(), "viewer", nonce)  # even with a valid token of their own session
    form = {"csrf_token": token, "record_id": str(record_id), "decision": "release", "reason": "me"}
    assert as_.post("/quarantine/decisions", form).status_code == 403
    assert as_.post(f"/quarantine/{record_id}/whole-id", {"csrf_token": token}).status_code == 403
    assert counts(world).get("released") is None


def test_four_eyes_a_block_finding_takes_a_second_steward(as_, world):
    record_id = world.held(world.short_id, "health-identity")
    form = {
        "record_id": str(record_id),
        "decision": "release",
        "reason": "the ID is right, the register agrees",
        "back": f"/lienthong/quarantine/{record_id}",
    }
    page = as_.get(f"/quarantine/{record_id}")
    assert "hai cán bộ khác nhau" in page.text
    assert world.short_id not in page.text  # not a valid ID (11 digits), masked all the same
    assert as_.post("/quarantine/decisions", form | {"csrf_token": as_.token()}).status_code == 303
    assert "chờ người duyệt thứ hai" in as_.get(f"/quarantine/{record_id}").text
    again = as_.post("/quarantine/decisions", form | {"csrf_token": as_.token()})
    assert again.status_code == 409 and "second steward" in again.text
    as_.user = SECOND
    assert as_.post("/quarantine/decisions", form | {"csrf_token": as_.token()}).status_code == 303
    with session_factory(world.engine)() as session:
        record = session.get(QuarantinedRecord, record_id)
        assert record.status == "released" and [d.steward for d in record.decisions] == ["steward", "steward2"]


def test_a_whole_id_is_shown_to_a_steward_only_after_the_view_is_logged(as_, world, monkeypatch):
    record_id = world.held(world.hostile_id, "health-identity")
    shown = as_.post(f"/quarantine/{record_id}/whole-id", {"csrf_token": as_.token()})
    assert shown.status_code == 200 and world.hostile_id in shown.text
    with session_factory(world.engine)() as session:
        [view] = session.scalars(select(StewardView)).all()
    assert view.steward == "steward" and f"quarantined record {record_id}" in view.record
    monkeypatch.delenv("LIENTHONG_DISCLOSURE_KEY")
    refused = as_.post(f"/quarantine/{record_id}/whole-id", {"csrf_token": as_.token()})
    assert world.hostile_id not in refused.text and "không hiện đầy đủ" in refused.text


def test_filters_are_codes_and_numbers_only(as_):
    for query in ({"province": "abc"}, {"run": "1 or 1=1"}, {"status": "everything"}, {"after": "x"}):
        assert as_.get("/quarantine", params=query).status_code == 400


def test_every_workbench_page_asks_for_a_signed_in_airflow_user(world, monkeypatch):
    from plugins.airflow_lienthong import app

    monkeypatch.setenv("LIENTHONG_DB_URL", world.url)
    anonymous = TestClient(app)
    assert anonymous.get("/quarantine").status_code == 401
    assert anonymous.get("/quarantine/1").status_code == 401
    assert anonymous.post("/quarantine/decisions", data={"record_id": "1"}).status_code == 401
    assert anonymous.post("/quarantine/1/whole-id").status_code == 401


class SimpleAuthManager:  # named as Airflow's: the mapping goes by the role
    pass


class OtherAuthManager:
    def __init__(self, allowed: set[str]) -> None:
        self.allowed = allowed

    def is_authorized_custom_view(self, *, method, resource_name, user) -> bool:
        return resource_name == STEWARD_VIEW and method in self.allowed


def user(name: str, role: str | None = None):
    return SimpleNamespace(get_name=lambda: name, role=role)


def test_roles_come_from_airflow_s_auth_manager():
    simple = SimpleAuthManager()
    assert visitor(simple, user("a", "admin")).is_steward and visitor(simple, user("o", "op")).is_steward
    assert not visitor(simple, user("v", "viewer")).is_steward and not visitor(simple, user("u", "user")).is_steward
    assert visitor(simple, user("v", "viewer")).may_read
    assert visitor(OtherAuthManager({"GET", "POST"}), user("s")) == Visitor("s", True, True)
    assert visitor(OtherAuthManager({"GET"}), user("r")) == Visitor("r", True, False)
    assert visitor(OtherAuthManager(set()), user("n")) == Visitor("n", False, False)


def test_the_csrf_token_is_bound_to_the_user_and_the_nonce():
    token = csrf_token(b"secret", "steward", "nonce")
    check_csrf(b"secret", "steward", "nonce", token)
    for args in (
        ("other", "nonce", token),
        ("steward", "other", token),
        ("steward", None, token),
        ("steward", "nonce", None),
    ):
        with pytest.raises(PermissionError):
            check_csrf(b"secret", *args)
