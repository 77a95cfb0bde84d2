import unicodedata
from collections import Counter
from datetime import date

import pytest
from sqlalchemy import select

from population import reference_data as ref
from population.admin_units import ward_in_force
from population.db import session_factory
from population.generator import DEFECT_TYPES, PopulationGenerator, citizen_rows, generate
from population.identity import is_personal_id, parse_personal_id
from population.models import Citizen, Household, IdCard, InjectedDefect
from population.names import LEGACY_D, fold_name

AS_OF = date(2026, 7, 1)


def test_same_seed_same_rows_other_seed_other_rows():
    first = list(citizen_rows(500, seed=11, defect_rate=0.1))
    assert first == list(citizen_rows(500, seed=11, defect_rate=0.1))
    assert first != list(citizen_rows(500, seed=12, defect_rate=0.1))


def test_invalid_arguments_are_refused(engine):
    with pytest.raises(ValueError, match="at least 1"):
        generate(engine, 0, seed=1)
    with pytest.raises(ValueError, match="between 0 and 1"):
        generate(engine, 10, seed=1, defect_rate=1.5)
    with pytest.raises(ValueError, match="on or after 2025-07-01"):
        generate(engine, 10, seed=1, as_of=date(2024, 1, 1))


def test_generation_refuses_a_populated_database(engine):
    generate(engine, 50, seed=1)
    with pytest.raises(ValueError, match="already holds 50 citizens"):
        generate(engine, 50, seed=2)


def test_population_looks_like_viet_nam(engine):
    result = generate(engine, 6_000, seed=3)
    assert result.citizens == 6_000
    with session_factory(engine)() as session:
        citizens = session.scalars(select(Citizen)).all()
        households = {h.id: h for h in session.scalars(select(Household))}
        cards = session.scalars(select(IdCard)).all()
    by_id = {c.personal_id: c for c in citizens}
    assert len(citizens) == 6_000 and len(by_id) == 6_000, "personal IDs are unique"
    surnames = Counter(c.full_name.split()[0] for c in citizens)
    assert 0.33 < surnames["Nguyễn"] / 6_000 < 0.43
    assert [name for name, _ in surnames.most_common(3)] == ["Nguyễn", "Trần", "Lê"]
    kinh = sum(c.ethnicity_code == "01" for c in citizens) / 6_000
    assert 0.80 < kinh < 0.90
    assert {c.ethnicity_code for c in citizens} <= {code for code, _, _ in ref.ETHNIC_GROUPS}
    males = sum(c.sex == "M" for c in citizens)
    assert 0.95 < males / (6_000 - males) < 1.09
    legacy_codes = {code for code, _ in ref.LEGACY_PROVINCES}
    for citizen in citizens:
        assert unicodedata.is_normalized("NFC", citizen.full_name)
        assert citizen.name_fold == fold_name(citizen.full_name)
        parts = parse_personal_id(citizen.personal_id)
        assert parts.province_code == citizen.birth_registration_province and parts.province_code in legacy_codes
        assert (parts.sex, parts.birth_year) == (citizen.sex, citizen.date_of_birth.year)
        for role in ("father", "mother", "spouse"):
            linked = getattr(citizen, f"{role}_personal_id")
            if linked is not None:
                assert by_id[linked].full_name == getattr(citizen, f"{role}_name")
        if citizen.spouse_personal_id and citizen.date_of_death is None:
            assert by_id[citizen.spouse_personal_id].spouse_personal_id == citizen.personal_id
        if citizen.father_personal_id:
            father = by_id[citizen.father_personal_id]
            assert father.sex == "M" and father.date_of_birth < citizen.date_of_birth
            assert citizen.full_name.split()[0] == father.full_name.split()[0], "children take the father's surname"
        assert households[citizen.household_id].ward_code == citizen.permanent_ward_code
    heads = {h.head_personal_id for h in households.values()}
    assert all(by_id[h].relation_to_head == "head" for h in heads)
    mean_size = 6_000 / len(households)
    assert 3.0 < mean_size < 3.8
    children = sum((AS_OF - c.date_of_birth).days < 15 * 365.25 for c in citizens) / 6_000
    assert 0.18 < children < 0.32, "the 2019 census had 24.3% aged 0-14"
    over_14 = {c.id for c in citizens if (AS_OF - c.date_of_birth).days >= 14 * 366}
    assert over_14 <= {card.citizen_id for card in cards}, "everyone aged 14 and over has a chip card"
    with session_factory(engine)() as session:
        wards = {c.permanent_ward_code for c in citizens}
        assert all(ward_in_force(session, code, AS_OF) for code in list(wards)[:200])


def test_injected_defects_match_their_ground_truth(engine):
    result = generate(engine, 8_000, seed=5, defect_rate=0.05)
    assert set(result.defects) == set(DEFECT_TYPES), "every defect type is injected"
    assert 0.03 < sum(result.defects.values()) / 8_000 < 0.07
    with session_factory(engine)() as session:
        citizens = {c.id: c for c in session.scalars(select(Citizen))}
        truth = session.scalars(select(InjectedDefect)).all()
        active_cards = {c.citizen_id for c in session.scalars(select(IdCard).where(IdCard.status == "active"))}
        in_force = {c for c in {x.permanent_ward_code for x in citizens.values()} if ward_in_force(session, c, AS_OF)}
    defective = {d.citizen_id for d in truth}

    def shows(kind: str, c: Citizen) -> bool:
        parts = parse_personal_id(c.personal_id)
        return {
            "name_nfd": not unicodedata.is_normalized("NFC", c.full_name),
            "name_legacy_d": LEGACY_D in c.full_name,
            "id_birth_year_mismatch": parts.birth_year != c.date_of_birth.year,
            "id_sex_mismatch": parts.sex != c.sex,
            "ward_not_in_force": c.permanent_ward_code not in in_force,
            "missing_mandatory": any(getattr(c, f) is None for f in ("ethnicity_code", "place_of_birth", "hometown")),
            "dead_with_active_card": c.date_of_death is not None and c.id in active_cards,
        }[kind]

    for defect in truth:
        citizen = citizens[defect.citizen_id]
        assert citizen.personal_id == defect.personal_id
        if defect.defect_type == "duplicate_person":
            original = citizens[int(defect.detail.rsplit(" ", 1)[1])]
            assert original.personal_id != citizen.personal_id
            assert (fold_name(original.full_name), original.date_of_birth, original.mother_personal_id) == (
                fold_name(citizen.full_name), citizen.date_of_birth, citizen.mother_personal_id)  # fmt: skip
        else:
            assert shows(defect.defect_type, citizen), f"{defect.defect_type} not visible on citizen {citizen.id}"
    clean = [c for c in citizens.values() if c.id not in defective]
    for kind in DEFECT_TYPES:
        if kind != "duplicate_person":
            assert not [c.id for c in clean if shows(kind, c)], f"clean records show {kind}"
    assert all(is_personal_id(c.personal_id) for c in citizens.values())


def test_generator_draws_are_deterministic_and_ids_unique_at_scale():
    generator = PopulationGenerator(seed=9)
    ids = [row["personal_id"] for _, people, _, _ in generator.households(30_000) for row in people]
    assert len(ids) == 30_000 == len(set(ids))
