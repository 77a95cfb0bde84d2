from datetime import date, timedelta

import pytest
from sqlalchemy import func, select

from population.changelog import changes_after, last_sequence
from population.db import session_factory
from population.events import BirthRegistration, LifeEventError, LifeEvents, card_expiry
from population.generator import generate
from population.identity import mask_personal_id, parse_personal_id
from population.models import Change, Citizen, IdCard

DAY = date(2026, 8, 15)


@pytest.fixture
def sessions(engine):
    generate(engine, 400, seed=7)
    return session_factory(engine)


@pytest.fixture
def events(sessions):
    return LifeEvents(sessions)


def one(sessions, *where) -> Citizen:
    with sessions() as session:
        found = session.scalars(
            select(Citizen).where(Citizen.date_of_death.is_(None), *where).order_by(Citizen.id)
        ).first()
    assert found is not None, "the test population lacks a candidate"
    return found


def snapshot(sessions):
    with sessions() as session:
        return (
            session.scalar(select(func.count()).select_from(Citizen)),
            session.scalar(select(func.count()).select_from(IdCard)),
            session.scalar(select(func.count()).select_from(Change)),
            last_sequence(session),
            session.scalar(select(func.max(Citizen.updated_at))),
        )


def rejected(sessions, call, rule: str, field: str) -> LifeEventError:
    before = snapshot(sessions)
    with pytest.raises(LifeEventError) as caught:
        call()
    assert caught.value.rule == rule
    assert caught.value.field == field
    assert f"'{rule}'" in str(caught.value) and f"'{field}'" in str(caught.value)
    assert snapshot(sessions) == before, "a rejected event must write nothing"
    return caught.value


def test_birth_registration_links_parents_and_logs_every_field(sessions, events):
    mother = one(
        sessions,
        Citizen.sex == "F",
        Citizen.marital_status == "married",
        Citizen.date_of_birth > date(1985, 1, 1),
    )
    born = DAY - timedelta(days=3)
    personal_id = events.register_birth(
        BirthRegistration(
            full_name="Nguyễn Thuỷ Tiên",
            sex="F",
            date_of_birth=born,
            registration_province="001",
            ward_code=mother.permanent_ward_code,
            address="Số 1, Tổ dân phố 2",
            mother_personal_id=mother.personal_id,
            father_personal_id=mother.spouse_personal_id,
            registered_on=DAY,
        )
    )
    parts = parse_personal_id(personal_id)
    assert (parts.province_code, parts.sex, parts.birth_year) == ("001", "F", born.year)
    with sessions() as session:
        child = session.scalar(select(Citizen).where(Citizen.personal_id == personal_id))
        assert child.mother_personal_id == mother.personal_id
        assert child.father_personal_id == mother.spouse_personal_id
        assert child.household_id == mother.household_id
        [entry] = changes_after(session, 0)
    assert entry.event_type == "birth_registration" and entry.personal_id == personal_id
    assert entry.changes["full_name"] == {"old": None, "new": "Nguyễn Thuỷ Tiên"}
    assert entry.changes["date_of_birth"]["new"] == born.isoformat()


@pytest.mark.parametrize(
    ("change", "rule", "field"),
    [
        ({"ward_code": "00001"}, "ward_not_in_force", "ward_code"),  # Phúc Xá: merged away in 2025
        ({"full_name": "  "}, "invalid_name", "full_name"),
        ({"full_name": "Lê Văn 2"}, "invalid_name", "full_name"),
        ({"sex": "X"}, "invalid_sex", "sex"),
        ({"registration_province": "003"}, "unknown_province", "registration_province"),
        ({"mother_personal_id": "000000000000"}, "unknown_citizen", "mother_personal_id"),
        ({"personal_id": "12345"}, "invalid_id", "personal_id"),
        ({"date_of_birth": date(2999, 1, 1)}, "date_in_future", "event_date"),
    ],
)
def test_birth_registration_rules(sessions, events, change, rule, field):
    mother = one(sessions, Citizen.sex == "F", Citizen.date_of_birth > date(1985, 1, 1))
    values = dict(
        full_name="Trần Minh Khôi",
        sex="M",
        date_of_birth=DAY,
        registration_province="001",
        ward_code=mother.permanent_ward_code,
        address="Số 3",
        mother_personal_id=mother.personal_id,
    )
    values.update(change)
    rejected(sessions, lambda: events.register_birth(BirthRegistration(**values)), rule, field)


def test_duplicate_personal_id_is_rejected(sessions, events):
    taken = one(sessions).personal_id
    mother = one(sessions, Citizen.sex == "F", Citizen.date_of_birth > date(1985, 1, 1))
    birth = BirthRegistration(
        full_name="Lê Gia Bảo",
        sex="M",
        date_of_birth=DAY,
        registration_province="001",
        ward_code=mother.permanent_ward_code,
        address="Số 3",
        personal_id=taken,
    )
    error = rejected(sessions, lambda: events.register_birth(birth), "duplicate_id", "personal_id")
    assert error.citizen == mask_personal_id(taken) and taken not in str(error)


def test_death_cancels_card_widows_spouse_and_is_logged(sessions, events):
    person = one(sessions, Citizen.marital_status == "married", Citizen.spouse_personal_id.is_not(None))
    events.record_death(person.personal_id, DAY)
    with sessions() as session:
        dead = session.get(Citizen, person.id)
        spouse = session.scalar(select(Citizen).where(Citizen.personal_id == person.spouse_personal_id))
        assert dead.date_of_death == DAY
        assert spouse.marital_status == "widowed"
        assert (
            session.scalar(select(func.count()).where(IdCard.citizen_id == person.id, IdCard.status == "active")) == 0
        )
        kinds = [(c.event_type, c.personal_id) for c in changes_after(session, 0)]
    assert ("death", person.personal_id) in kinds and ("spouse_death", spouse.personal_id) in kinds
    rejected(sessions, lambda: events.record_death(person.personal_id, DAY), "already_dead", "date_of_death")
    rejected(
        sessions,
        lambda: events.change_name(person.personal_id, "Ngô Văn An", DAY),
        "citizen_dead",
        "date_of_death",
    )


def test_death_rules(sessions, events):
    person = one(sessions)
    before_birth = person.date_of_birth - timedelta(days=1)
    rejected(
        sessions,
        lambda: events.record_death(person.personal_id, before_birth),
        "death_before_birth",
        "date_of_death",
    )
    rejected(sessions, lambda: events.record_death("999999999999", DAY), "unknown_citizen", "personal_id")
    rejected(sessions, lambda: events.record_death("not-an-id", DAY), "unknown_citizen", "personal_id")


def test_residence_change(sessions, events):
    person = one(sessions)
    events.change_residence(person.personal_id, "temporary", "00070", "Số 5 Hàng Bài", DAY)  # Phường Hoàn Kiếm
    with sessions() as session:
        assert session.get(Citizen, person.id).temporary_ward_code == "00070"
        [entry] = changes_after(session, 0)
    assert entry.event_type == "temporary_residence_change"
    assert entry.changes["temporary_ward_code"] == {"old": person.temporary_ward_code, "new": "00070"}
    rejected(
        sessions,
        lambda: events.change_residence(person.personal_id, "temporary", "00070", "Số 5 Hàng Bài", DAY),
        "unchanged",
        "temporary_ward_code",
    )
    rejected(
        sessions,
        lambda: events.change_residence(person.personal_id, "permanent", "99999", "Số 1", DAY),
        "ward_not_in_force",
        "permanent_ward_code",
    )
    # 00070 is in force only since the 2025 reform
    rejected(
        sessions,
        lambda: events.change_residence(person.personal_id, "current", "00070", "Số 1", date(2025, 6, 30)),
        "ward_not_in_force",
        "current_ward_code",
    )
    rejected(
        sessions,
        lambda: events.change_residence(person.personal_id, "holiday", "00070", "Số 1", DAY),
        "unknown_residence_kind",
        "kind",
    )


def test_name_change_keeps_the_old_name_and_normalises(sessions, events):
    person = one(sessions)
    events.change_name(person.personal_id, "Ðỗ  Thị Hoà", DAY)  # legacy Ð, double space
    with sessions() as session:
        renamed = session.get(Citizen, person.id)
    assert renamed.full_name == "Đỗ Thị Hoà"
    assert renamed.name_fold == "do thi hoa"
    assert person.full_name in renamed.other_names


def test_cards_issue_renew_and_expiry_rules(sessions, events):
    person = one(sessions, Citizen.date_of_birth < date(1990, 1, 1))
    rejected(sessions, lambda: events.issue_card(person.personal_id, DAY), "card_active_exists", "card_status")
    events.renew_card(person.personal_id, DAY)
    with sessions() as session:
        statuses = sorted(c.status for c in session.scalars(select(IdCard).where(IdCard.citizen_id == person.id)))
        [entry] = changes_after(session, 0)
    assert statuses == ["active", "replaced"]
    assert entry.event_type == "card_renewal" and set(entry.changes) == {"card_issued_on", "card_expires_on"}
    child = one(sessions, Citizen.date_of_birth > date(2016, 1, 1))
    rejected(sessions, lambda: events.renew_card(child.personal_id, DAY), "no_active_card", "card_status")


@pytest.mark.parametrize(
    ("born", "issued", "expires"),
    [
        (date(2015, 5, 1), date(2026, 1, 1), date(2029, 5, 1)),  # aged 10: until 14
        (date(2013, 5, 1), date(2026, 1, 1), date(2038, 5, 1)),  # aged 12, within 2 years of 14: until 25
        (date(1990, 5, 1), date(2026, 1, 1), date(2030, 5, 1)),  # aged 35: until 40
        (date(1967, 5, 1), date(2026, 1, 1), None),  # aged 58: for life
    ],
)
def test_card_expiry(born, issued, expires):
    assert card_expiry(born, issued) == expires


def test_marriage_and_divorce(sessions, events):
    groom = one(
        sessions,
        Citizen.sex == "M",
        Citizen.marital_status == "single",
        Citizen.date_of_birth < date(2000, 1, 1),
    )
    bride = one(
        sessions,
        Citizen.sex == "F",
        Citizen.marital_status == "single",
        Citizen.date_of_birth < date(2002, 1, 1),
    )
    events.marry(groom.personal_id, bride.personal_id, DAY)
    with sessions() as session:
        assert session.get(Citizen, groom.id).spouse_personal_id == bride.personal_id
        assert session.get(Citizen, bride.id).marital_status == "married"
    rejected(
        sessions,
        lambda: events.marry(groom.personal_id, bride.personal_id, DAY),
        "already_married",
        "marital_status",
    )
    events.divorce(bride.personal_id, groom.personal_id, DAY)
    with sessions() as session:
        assert session.get(Citizen, groom.id).marital_status == "divorced"
        kinds = [c.event_type for c in changes_after(session, 0)]
    assert kinds == ["marriage", "marriage", "divorce", "divorce"]
    rejected(
        sessions,
        lambda: events.divorce(bride.personal_id, groom.personal_id, DAY),
        "not_married_to",
        "spouse_personal_id",
    )
    rejected(
        sessions,
        lambda: events.marry(groom.personal_id, groom.personal_id, DAY),
        "same_person",
        "spouse_personal_id",
    )
    child = one(sessions, Citizen.date_of_birth > date(2012, 1, 1))
    rejected(
        sessions,
        lambda: events.marry(child.personal_id, groom.personal_id, DAY),
        "under_marriage_age",
        "date_of_birth",
    )


def test_change_log_is_ordered_and_gapless(sessions, events):
    people = [one(sessions, Citizen.id == i) for i in range(1, 6)]
    for i, person in enumerate(people):
        events.change_residence(person.personal_id, "temporary", "00070", f"Số {i + 100}", DAY)
    with sessions() as session:
        sequences = [c.sequence for c in changes_after(session, 0)]
        assert [c.sequence for c in changes_after(session, 2, limit=2)] == [3, 4]
        assert last_sequence(session) == 5
    assert sequences == [1, 2, 3, 4, 5]
