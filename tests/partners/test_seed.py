"""Seeding the registries from the synthetic population, with deliberate disagreements."""

from __future__ import annotations

from stdnum.vn import mst

from partners.base import sandbox_agencies
from partners.seed import seed_registry, strip_diacritics


def test_the_same_population_and_seed_give_the_same_registry(citizens):
    assert seed_registry("tax", citizens, 3) == seed_registry("tax", citizens, 3)
    assert seed_registry("tax", citizens, 3) != seed_registry("tax", citizens, 4)


def test_every_kind_of_disagreement_is_seeded_and_recorded(citizens):
    kinds: set[str] = set()
    for partner in sandbox_agencies():
        people, truth = seed_registry(partner, citizens, 7)
        by_id = {p.personal_id: p for p in people}
        population = {c.personal_id: c for c in citizens}
        for entry in truth:
            kinds.add(entry.kind)
            citizen = population[entry.personal_id]
            if entry.kind == "missing":
                assert entry.personal_id not in by_id
            elif entry.kind == "name_differs":
                assert by_id[entry.personal_id].full_name == entry.partner_value != citizen.full_name
            elif entry.kind == "dob_differs":
                assert (
                    by_id[entry.personal_id].date_of_birth == entry.partner_value != citizen.date_of_birth.isoformat()
                )
            else:
                assert citizen.date_of_death is not None and by_id[entry.personal_id].status == "active"
    assert kinds == {"missing", "name_differs", "dob_differs", "dead_but_active"}


def test_registries_hold_the_people_they_would_really_hold(citizens):
    tax, _ = seed_registry("tax", citizens, 7)
    health, _ = seed_registry("health", citizens, 7)
    ages = {c.personal_id: c.age() for c in citizens}
    assert all(ages[p.personal_id] >= 18 for p in tax)
    assert len(health) > len(tax) > 0
    legacy_codes = [p.details["tax_code"] for p in tax if p.details["tax_code"] != p.personal_id]
    assert legacy_codes and all(len(code) == 10 and mst.is_valid(code) for code in legacy_codes)
    assert all(len(p.details["social_insurance_number"]) == 10 for p in health)
    assert all(p.details["card_code"].endswith(p.details["social_insurance_number"]) for p in health)


def test_names_lose_their_diacritics_as_legacy_systems_lose_them():
    assert strip_diacritics("Đặng Thị Thuỷ") == "Dang Thi Thuy"
