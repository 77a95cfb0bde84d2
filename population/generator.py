"""A synthetic population that looks like Viet Nam's, reproducible from a seed, loaded in bulk.

Households are built one at a time (a head, perhaps a spouse, children born to the mother between 18 and 42,
perhaps the head's parents); every other attribute is drawn from the reference distributions in
``population.reference_data``. Rows go to the database through the bulk path of each engine: ``COPY`` on
PostgreSQL, ``executemany`` in one transaction on SQLite; never row by row through the ORM.

With a defect rate, that share of records carries one defect of the kinds real registries have, and the
``injected_defect`` table says which record carries which, so that validation can be scored.
"""

from __future__ import annotations

import queue
import random
import threading
import time
import unicodedata
from bisect import bisect
from collections import Counter
from collections.abc import Callable, Iterator
from dataclasses import dataclass, field
from datetime import UTC, date, datetime, timedelta
from functools import cache, cached_property
from itertools import accumulate

from sqlalchemy import Engine, func, select

from population import reference_data as ref
from population.admin_units import REFORM_DATE, catalogue_rows
from population.db import is_sqlite
from population.events import card_expiry
from population.identity import build_personal_id
from population.models import Citizen
from population.names import LEGACY_D, fold_name

DEFAULT_AS_OF = date(2026, 7, 1)
CHUNK_CITIZENS = 20_000

DEFECT_TYPES = (
    "name_nfd",  # full name stored decomposed (NFD) instead of NFC
    "name_legacy_d",  # 'Ð' (U+00D0) typed for 'Đ'
    "id_birth_year_mismatch",  # the ID's year digits disagree with the recorded date of birth
    "id_sex_mismatch",  # the ID's century/sex digit disagrees with the recorded sex
    "ward_not_in_force",  # permanent residence at a ward code that is not in force
    "missing_mandatory",  # a mandatory field left empty
    "duplicate_person",  # one person recorded again under a second personal ID
    "dead_with_active_card",  # a dead person whose chip card is still active
)
MANDATORY_FIELDS_THAT_GO_MISSING = ("ethnicity_code", "place_of_birth", "hometown")

CITIZEN_COLUMNS = (
    "id", "personal_id", "full_name", "name_fold", "other_names", "date_of_birth", "sex", "place_of_birth",
    "birth_registration_province", "hometown", "ethnicity_code", "religion", "nationality", "blood_type",
    "former_id_number", "father_personal_id", "father_name", "mother_personal_id", "mother_name",
    "spouse_personal_id", "spouse_name", "representative_personal_id", "representative_name",
    "permanent_ward_code", "permanent_address", "temporary_ward_code", "temporary_address",
    "current_ward_code", "current_address", "marital_status", "household_id", "relation_to_head",
    "date_of_death", "date_missing", "phone", "email", "updated_at",
)  # fmt: skip
HOUSEHOLD_COLUMNS = ("id", "household_code", "head_personal_id", "ward_code", "address")
CARD_COLUMNS = ("id", "citizen_id", "card_number", "issued_on", "expires_on", "status")
DEFECT_COLUMNS = ("id", "citizen_id", "personal_id", "defect_type", "field", "detail")
CARDS_SINCE = date(2021, 1, 1)  # chip cards (CCCD gắn chip) were first issued in 2021
CARDS_FOR_CHILDREN_SINCE = date(2024, 7, 1)  # Law on Identification 2023 in force
MOBILE_PREFIXES = (
    "032", "033", "034", "035", "036", "037", "038", "039", "056", "058", "059", "070", "076", "077", "078", "079",
    "081", "082", "083", "084", "085", "086", "088", "089", "090", "091", "092", "093", "094", "096", "097", "098",
    "099",
)  # fmt: skip


class _Draw:
    """A categorical distribution sampled with one bisect on cumulative weights."""

    def __init__(self, pairs):
        self.values = [p[0] for p in pairs]
        self.cumulative = list(accumulate(p[-1] for p in pairs))
        self.total = self.cumulative[-1]

    def __call__(self, rng: random.Random):
        return self.values[bisect(self.cumulative, rng.random() * self.total)]


@dataclass
class GenerationResult:
    citizens: int = 0
    households: int = 0
    cards: int = 0
    defects: dict[str, int] = field(default_factory=dict)
    seconds: float = 0.0


@dataclass
class _Person:
    id: int
    sex: str
    dob: date
    relation: str
    surname: str = ""
    row: dict = field(default_factory=dict)


AgeWeights = tuple[tuple[int, float], ...]


@cache
def _calibrated_age_weights(as_of: date, rounds: int = 4, pilot_size: int = 20_000) -> tuple[AgeWeights, AgeWeights]:
    """Weights of the age bands drawn for household heads (25 and over) and for children (under 25) such that
    the whole population matches the census pyramid.

    Households put spouses, children and grandparents around the head, which skews the ages; so start from the
    census shares and, a few rounds, draw a pilot population (fixed seed) and scale each band's weight by census
    share / pilot share. The result depends only on the reference data and as_of."""
    census = [m + f for _, _, m, f in ref.AGE_SEX_STRUCTURE]
    weights = dict(enumerate(census))
    heads = [band for band, (lo, _, _, _) in enumerate(ref.AGE_SEX_STRUCTURE) if lo >= 25]
    children = [band for band, (_, hi, _, _) in enumerate(ref.AGE_SEX_STRUCTURE) if hi < 25]

    def split() -> tuple[AgeWeights, AgeWeights]:
        return tuple((b, weights[b]) for b in heads), tuple((b, weights[b]) for b in children)

    for _ in range(rounds):
        pilot = PopulationGenerator(0, as_of, age_weights=split())
        counts = Counter(
            ref.age_band((as_of - row["date_of_birth"]).days * 100 // 36525)
            for _, people, _, _ in pilot.households(pilot_size)
            for row in people
        )
        for band in weights:
            share = counts[band] / pilot_size
            weights[band] *= census[band] / share if share else 1.0
    return split()


class PopulationGenerator:
    """Draws households and their members. Pure: the same seed gives the same rows."""

    def __init__(
        self,
        seed: int,
        as_of: date = DEFAULT_AS_OF,
        defect_rate: float = 0.0,
        age_weights: tuple[AgeWeights, AgeWeights] | None = None,
    ):
        if not 0.0 <= defect_rate <= 1.0:
            raise ValueError("defect rate must be between 0 and 1")
        self.rng = random.Random(seed)
        self.as_of = as_of
        self.defect_rate = defect_rate
        self.surname = _Draw(ref.SURNAMES)
        self.middle = {"M": _Draw(ref.MIDDLE_NAMES_MALE), "F": _Draw(ref.MIDDLE_NAMES_FEMALE)}
        self.given = {"M": _Draw(ref.GIVEN_NAMES_MALE), "F": _Draw(ref.GIVEN_NAMES_FEMALE)}
        self.ethnicity = _Draw([(code, share) for code, _, share in ref.ETHNIC_GROUPS])
        self.religion = _Draw(ref.RELIGIONS)
        self.blood = _Draw(ref.BLOOD_TYPES)
        self.household_size = _Draw(ref.HOUSEHOLD_SIZE)
        self.legacy_name = dict(ref.LEGACY_PROVINCES)
        self.birth_province = _Draw(list(ref.LEGACY_PROVINCE_POPULATION_SHARE.items()))
        self._age_weights = age_weights
        self.bands = ref.AGE_SEX_STRUCTURE
        # where people live: a current province by population, then a ward of it
        units = catalogue_rows()
        provinces = {u["code"]: u["name"] for u in units if u["level"] == "province" and u["effective_to"] is None}
        self.wards: dict[str, list[tuple[str, str, str]]] = {p: [] for p in provinces}
        for u in units:
            if u["level"] == "ward":
                self.wards[u["province_code"]].append((u["code"], u["name"], provinces[u["province_code"]]))
        weight: dict[str, float] = {}
        self.legacy_of: dict[str, list[tuple[str, float]]] = {}
        for legacy, current in ref.LEGACY_TO_CURRENT_PROVINCE.items():
            share = ref.LEGACY_PROVINCE_POPULATION_SHARE[legacy]
            weight[current] = weight.get(current, 0.0) + share
            self.legacy_of.setdefault(current, []).append((legacy, share))
        self.province = _Draw(sorted(weight.items()))
        self.legacy_in = {p: _Draw(pairs) for p, pairs in self.legacy_of.items()}
        in_force = {int(u["code"]) for u in units if u["level"] == "ward"}
        self.retired_wards = [f"{c:05d}" for c in range(1, max(in_force)) if c not in in_force]
        self.next_id = {"citizen": 1, "household": 1, "card": 1, "defect": 1}
        self._id_counters: dict[tuple[str, int, int], list[int]] = {}
        self.updated_at = datetime.combine(as_of, datetime.min.time(), UTC)

    # The age bands of heads and children are calibrated on first use: drawing only names and wards (the day of
    # life events does) costs no pilot populations.
    @cached_property
    def adult_age(self) -> _Draw:
        return _Draw((self._age_weights or _calibrated_age_weights(self.as_of))[0])

    @cached_property
    def young_age(self) -> _Draw:
        return _Draw((self._age_weights or _calibrated_age_weights(self.as_of))[1])

    # -- the pieces -----------------------------------------------------------------------------------

    def _take(self, kind: str) -> int:
        value = self.next_id[kind]
        self.next_id[kind] = value + 1
        return value

    def _age(self, band: int) -> float:
        lo, hi, _, _ = self.bands[band]
        return lo + self.rng.random() * (hi - lo + 1)

    def _dob(self, age: float) -> date:
        return date.fromordinal(self.as_of.toordinal() - int(age * 365.2425) - 1)

    def _personal_id(self, province: str, dob: date, sex: str) -> str:
        """Unique by construction: a counter per (province, century/sex, year), scrambled over 6 digits by a
        multiplier coprime to 10^6, so serials look random and never collide."""
        key = (province, dob.year, 1 if sex == "F" else 0)
        counter = self._id_counters.get(key)
        if counter is None:
            counter = self._id_counters[key] = [0, self.rng.randrange(1_000_000)]
        counter[0] += 1
        if counter[0] >= 1_000_000:
            raise ValueError(f"more than a million people born in one province, year and sex: {key}")
        return build_personal_id(province, dob, sex, (counter[0] * 738_271 + counter[1]) % 1_000_000)

    def draw_name(self, surname: str, sex: str, dob: date) -> str:
        if sex == "F" and dob.year < 1990 and self.rng.random() < 0.7:
            middle = "Thị"
        elif sex == "M" and dob.year < 1980 and self.rng.random() < 0.5:
            middle = "Văn"
        else:
            middle = self.middle[sex](self.rng)
        return f"{surname} {middle} {self.given[sex](self.rng)}"

    def draw_address(self, ward: tuple[str, str, str]) -> str:
        code, ward_name, province_name = ward
        place = "Thôn" if ward_name.startswith("Xã") else "Tổ dân phố"
        return f"Số {self.rng.randint(1, 399)}, {place} {self.rng.randint(1, 30)}, {ward_name}, {province_name}"

    # -- households -----------------------------------------------------------------------------------

    def _child_age(self, mother_age: float) -> float | None:
        """A child's age from the census pyramid, given that the mother was 18 to 45 at the birth."""
        for _ in range(12):
            age = self._age(self.young_age(self.rng))
            if 18 <= mother_age - age <= 45:
                return age
        return None

    def _members(self, size: int) -> list[_Person]:
        rng = self.rng
        head_age = self._age(self.adult_age(rng))
        if size == 1:
            sex = "F" if rng.random() < (0.7 if head_age > 60 else 0.5) else "M"
            return [_Person(0, sex, self._dob(head_age), "head")]
        couple = rng.random() < 0.9
        head_sex = "M" if rng.random() < 0.7 else "F"
        members = [_Person(0, head_sex, self._dob(head_age), "head")]
        mother_age = head_age if head_sex == "F" else None
        if couple:
            gap = max(-6.0, min(15.0, rng.gauss(3.0, 3.0)))  # husband older by about three years
            spouse_age = max(18.0, head_age - gap if head_sex == "M" else head_age + gap)
            members.append(_Person(0, "F" if head_sex == "M" else "M", self._dob(spouse_age), "spouse"))
            if head_sex == "M":
                mother_age = spouse_age
        room = size - len(members)
        elders = 0
        if room >= 2 and head_age < 62 and rng.random() < 0.3:
            elders = 2 if room >= 3 and rng.random() < 0.5 else 1
        if mother_age is None:
            mother_age = head_age - 3
        for _ in range(room - elders):
            child_age = self._child_age(mother_age)
            if child_age is None:
                continue  # no child of plausible age for this mother: a smaller household
            ratio = ref.SEX_RATIO_AT_BIRTH if child_age < 20 else 105.0  # the high ratio is recent
            sex = "M" if rng.random() < ratio / (100 + ratio) else "F"
            members.append(_Person(0, sex, self._dob(child_age), "child"))
        for i in range(elders):
            sex = ("M", "F")[i] if elders == 2 else ("F" if rng.random() < 0.7 else "M")
            members.append(_Person(0, sex, self._dob(min(99.0, head_age + rng.uniform(20, 35))), "parent"))
        return members

    def households(self, citizens: int) -> Iterator[tuple[dict, list[dict], list[dict], list[dict]]]:
        """Yields (household, citizen rows, card rows, defect rows) until ``citizens`` rows were made."""
        made = 0
        while made < citizens:
            size = min(self.household_size(self.rng), citizens - made)
            household, people, cards, defects = self._household(size, citizens - made)
            made += len(people)
            yield household, people, cards, defects

    def _household(self, size: int, room: int):
        rng = self.rng
        members = self._members(size)
        province = self.province(rng)
        ward = rng.choice(self.wards[province])
        address = self.draw_address(ward)
        ethnicity = self.ethnicity(rng)
        religion = self.religion(rng)
        household_id = self._take("household")
        for person in members:
            person.id = self._take("citizen")
        head = members[0]
        spouse = next((p for p in members if p.relation == "spouse"), None)
        elders = [p for p in members if p.relation == "parent"]
        father = next((p for p in (head, spouse) if p and p.sex == "M"), None)
        mother = next((p for p in (head, spouse) if p and p.sex == "F"), None)
        # surnames pass down the male line: the head's father shares the head's, children take their father's
        for person in (head, spouse, *elders):
            if person is not None:
                person.surname = self.surname(rng)
        for elder in elders:
            if elder.sex == "M":
                elder.surname = head.surname
        for person in members:
            if person.relation == "child":
                person.surname = (father or mother or head).surname
        rows = []
        for person in members:
            born_here = rng.random() < 0.85
            birth_province = self.legacy_in[province](rng) if born_here else self.birth_province(rng)
            full_name = self.draw_name(person.surname, person.sex, person.dob)
            age = (self.as_of - person.dob).days / 365.2425
            person.row = row = {
                "id": person.id,
                "personal_id": self._personal_id(birth_province, person.dob, person.sex),
                "full_name": full_name,
                "other_names": None,
                "date_of_birth": person.dob,
                "sex": person.sex,
                "place_of_birth": self.legacy_name[birth_province],
                "birth_registration_province": birth_province,
                "hometown": self.legacy_name[birth_province],
                "ethnicity_code": ethnicity if person is head or rng.random() < 0.9 else self.ethnicity(rng),
                "religion": religion,
                "nationality": "VN",
                "blood_type": self.blood(rng),
                "former_id_number": self._former_id(person.dob),
                "permanent_ward_code": ward[0],
                "permanent_address": address,
                "temporary_ward_code": None,
                "temporary_address": None,
                "current_ward_code": ward[0],
                "current_address": address,
                "marital_status": self._marital_status(person, age, spouse, elders),
                "household_id": household_id,
                "relation_to_head": person.relation,
                "date_of_death": None,
                "date_missing": None,
                "phone": self._phone(age),
                "email": None,
                "updated_at": self.updated_at,
            }  # fmt: skip
            if 18 <= age < 60 and rng.random() < 0.3:
                row["email"] = f"{fold_name(full_name).replace(' ', '.')}{rng.randrange(100)}@example.vn"
            if 18 <= age < 40 and rng.random() < 0.06:  # studying or working away from home
                elsewhere = rng.choice(self.wards[self.province(rng)])
                row["temporary_ward_code"] = row["current_ward_code"] = elsewhere[0]
                row["temporary_address"] = row["current_address"] = self.draw_address(elsewhere)
            rows.append(row)
        self._link_family(members, head, spouse, elders, father, mother)
        self._deaths(members)
        for row in rows:
            row["name_fold"] = fold_name(row["full_name"])
        cards = [card for person in members if (card := self._card(person)) is not None]
        defects = self._defects(members, rows, cards, room)
        household = {
            "id": household_id,
            "household_code": f"HK{household_id:010d}",
            "head_personal_id": head.row["personal_id"],
            "ward_code": ward[0],
            "address": address,
        }
        return household, rows, cards, defects

    def _former_id(self, dob: date) -> str | None:
        """Most people born before 2005 held a 9-digit CMND before the 12-digit number."""
        if dob.year < 2005 and self.rng.random() < 0.8:
            return f"{self.rng.randrange(10**9):09d}"
        return None

    def _phone(self, age: float) -> str | None:
        if age >= 15 and self.rng.random() < 0.9:
            return f"{self.rng.choice(MOBILE_PREFIXES)}{self.rng.randrange(10**7):07d}"
        return None

    def _marital_status(self, person: _Person, age: float, spouse, elders) -> str:
        if person.relation in ("head", "spouse") and spouse is not None:
            return "married"
        if person.relation == "parent":
            return "married" if len(elders) == 2 else "widowed"
        if age < 28 or person.relation == "child":
            return "single"
        roll = self.rng.random()
        if age > 60:
            return "widowed" if roll < 0.7 else "divorced" if roll < 0.8 else "single"
        return "single" if roll < 0.5 else "divorced" if roll < 0.8 else "widowed"

    def _link_family(self, members, head, spouse, elders, father, mother) -> None:
        def link(person: _Person, role: str, other: _Person | None) -> None:
            if other is not None:
                person.row[f"{role}_personal_id"] = other.row["personal_id"]
                person.row[f"{role}_name"] = other.row["full_name"]
            else:
                person.row.setdefault(f"{role}_personal_id", None)
                person.row.setdefault(f"{role}_name", None)

        elder_father = next((p for p in elders if p.sex == "M"), None)
        elder_mother = next((p for p in elders if p.sex == "F"), None)
        for person in members:
            is_child = person.relation == "child"
            link(person, "father", father if is_child else elder_father if person is head else None)
            link(person, "mother", mother if is_child else elder_mother if person is head else None)
            partner = None
            if person is head and spouse is not None:
                partner = spouse
            elif person is spouse:
                partner = head
            elif person.relation == "parent" and len(elders) == 2:
                partner = elders[1] if person is elders[0] else elders[0]
            link(person, "spouse", partner)
            minor = (self.as_of - person.dob).days < 18 * 365.2425
            link(person, "representative", (father or mother) if minor and is_child else None)

    def _deaths(self, members) -> None:
        for person in members:
            age = (self.as_of - person.dob).days / 365.2425
            if age >= 70 and self.rng.random() < 0.04:
                died = self.as_of - timedelta(days=self.rng.randint(1, 900))
                person.row["date_of_death"] = max(died, person.dob + timedelta(days=1))
                for other in members:
                    if other is not person and other.row.get("spouse_personal_id") == person.row["personal_id"]:
                        other.row["marital_status"] = "widowed"

    def _card(self, person: _Person) -> dict | None:
        dob = person.dob
        fourteen = date(dob.year + 14, dob.month, min(dob.day, 28))
        if fourteen <= self.as_of:
            start = max(CARDS_SINCE, fourteen)
        elif self.rng.random() < 0.15:  # parents may ask for a card for a younger child
            start = max(CARDS_FOR_CHILDREN_SINCE, dob)
        else:
            return None
        if start >= self.as_of:
            return None
        issued = start + timedelta(days=self.rng.randrange((self.as_of - start).days))
        expires = card_expiry(dob, issued)
        if person.row["date_of_death"] is not None:
            status = "cancelled"
        elif expires is not None and expires < self.as_of:
            status = "expired"
        else:
            status = "active"
        return {
            "id": self._take("card"),
            "citizen_id": person.id,
            "card_number": person.row["personal_id"],
            "issued_on": issued,
            "expires_on": expires,
            "status": status,
        }

    # -- defects --------------------------------------------------------------------------------------

    def _defects(self, members, rows, cards, room) -> list[dict]:
        defects = []
        if self.defect_rate == 0:
            return defects
        card_of = {c["citizen_id"]: c for c in cards}
        for person in list(members):
            if self.rng.random() >= self.defect_rate:
                continue
            row = person.row
            kinds = list(DEFECT_TYPES)
            if len(rows) >= room:  # no room left for a duplicate record
                kinds.remove("duplicate_person")
            card = card_of.get(person.id)
            if card is None or card["status"] != "active":
                kinds.remove("dead_with_active_card")
            if unicodedata.is_normalized("NFD", row["full_name"]):  # no diacritics: NFD would change nothing
                kinds.remove("name_nfd")
            kind = self.rng.choice(kinds)
            field_name, detail = self._inject(kind, person, row, rows, card)
            defects.append({
                "id": self._take("defect"),
                "citizen_id": row["id"] if kind != "duplicate_person" else rows[-1]["id"],
                "personal_id": row["personal_id"] if kind != "duplicate_person" else rows[-1]["personal_id"],
                "defect_type": kind,
                "field": field_name,
                "detail": detail,
            })  # fmt: skip
        return defects

    def _inject(self, kind: str, person: _Person, row: dict, rows: list[dict], card: dict | None):
        rng = self.rng
        if kind == "name_nfd":
            row["full_name"] = unicodedata.normalize("NFD", row["full_name"])
            return "full_name", "stored in NFD"
        if kind == "name_legacy_d":
            surname, rest = row["full_name"].split(" ", 1)
            if "Đ" not in row["full_name"]:
                surname = "Đỗ"  # the defect needs a Đ to mistype; Đỗ is a common surname
            row["full_name"] = f"{surname} {rest}".replace("Đ", LEGACY_D)
            row["name_fold"] = fold_name(row["full_name"])
            return "full_name", "U+00D0 typed for U+0110"
        if kind == "id_birth_year_mismatch":
            shift = rng.choice((-3, -2, -1, 1, 2, 3))
            dob = row["date_of_birth"]
            row["date_of_birth"] = dob.replace(year=dob.year + shift, day=min(dob.day, 28))
            return "date_of_birth", f"birth year moved by {shift:+d} from the one in the ID"
        if kind == "id_sex_mismatch":
            row["sex"] = "F" if row["sex"] == "M" else "M"
            return "sex", "sex differs from the ID's century/sex digit"
        if kind == "ward_not_in_force":
            row["permanent_ward_code"] = rng.choice(self.retired_wards)
            return "permanent_ward_code", "ward code not in force since 2025-07-01"
        if kind == "missing_mandatory":
            field_name = rng.choice(MANDATORY_FIELDS_THAT_GO_MISSING)
            row[field_name] = None
            return field_name, "mandatory field empty"
        if kind == "duplicate_person":
            copy = dict(row)
            copy["id"] = self._take("citizen")
            copy["personal_id"] = self._personal_id(row["birth_registration_province"], person.dob, person.sex)
            copy["household_id"] = None
            copy["relation_to_head"] = None
            elsewhere = rng.choice(self.wards[self.province(rng)])
            copy["permanent_ward_code"] = copy["current_ward_code"] = elsewhere[0]
            copy["permanent_address"] = copy["current_address"] = self.draw_address(elsewhere)
            copy["temporary_ward_code"] = copy["temporary_address"] = None
            rows.append(copy)
            return "personal_id", f"same person as citizen {row['id']}"
        if kind == "dead_with_active_card":
            row["date_of_death"] = self.as_of - timedelta(days=rng.randint(1, 700))
            assert card is not None
            return "date_of_death", "dead but the chip card is still active"
        raise ValueError(kind)


# -- loading --------------------------------------------------------------------------------------------


def _sqlite_value(value):
    if isinstance(value, datetime):
        return value.strftime("%Y-%m-%d %H:%M:%S.%f")
    if isinstance(value, date):
        return value.isoformat()
    return value


class _Loader:
    """Bulk writes into the population database: COPY on PostgreSQL, executemany on SQLite."""

    def __init__(self, engine: Engine):
        self.engine = engine
        self.sqlite = is_sqlite(engine)
        self.connection = engine.raw_connection()
        self.cursor = self.connection.cursor()

    def write(self, table: str, columns: tuple[str, ...], rows: list[dict]) -> None:
        if not rows:
            return
        if self.sqlite:
            marks = ", ".join("?" * len(columns))
            self.cursor.executemany(
                f"INSERT INTO {table} ({', '.join(columns)}) VALUES ({marks})",
                [tuple(_sqlite_value(r[c]) for c in columns) for r in rows],
            )
        else:
            with self.cursor.copy(f"COPY {table} ({', '.join(columns)}) FROM STDIN") as copy:
                for r in rows:
                    copy.write_row(tuple(r[c] for c in columns))

    def finish(self) -> None:
        if not self.sqlite:
            for table in ("citizen", "household", "id_card", "injected_defect"):
                next_id = f"COALESCE((SELECT MAX(id) FROM {table}), 0) + 1"
                self.cursor.execute(f"SELECT setval(pg_get_serial_sequence('{table}', 'id'), {next_id}, false)")
            # fresh statistics, so that the first extract after a bulk load is planned for the real sizes
            self.cursor.execute("ANALYZE household, citizen, id_card, injected_defect")
        self.connection.commit()
        self.connection.close()

    def abort(self) -> None:
        self.connection.rollback()
        self.connection.close()


def generate(
    engine: Engine,
    citizens: int,
    seed: int,
    defect_rate: float = 0.0,
    as_of: date = DEFAULT_AS_OF,
    progress: Callable[[int], None] | None = None,
) -> GenerationResult:
    """Generate ``citizens`` people into an upgraded, empty population database, in one transaction."""
    if citizens < 1:
        raise ValueError("the number of citizens must be at least 1")
    if as_of < REFORM_DATE:
        raise ValueError(f"as_of must be on or after {REFORM_DATE}: residences use the wards in force since then")
    with engine.connect() as connection:
        existing = connection.execute(select(func.count()).select_from(Citizen)).scalar_one()
    if existing:
        raise ValueError(f"the database already holds {existing} citizens; generate into an empty database")
    started = time.perf_counter()
    generator = PopulationGenerator(seed, as_of, defect_rate)
    result = GenerationResult()
    loader = _Loader(engine)
    # Drawing the population (Python) and loading it (the database) overlap: a writer thread loads one chunk
    # while the next is drawn. The queue holds at most one chunk, so memory stays bounded.
    chunks: queue.Queue = queue.Queue(maxsize=1)
    failures: list[BaseException] = []

    def load_chunks() -> None:
        while (batch := chunks.get()) is not None:
            if not failures:
                try:
                    _flush(loader, batch, result, progress)
                except BaseException as error:  # handed to the main thread, which re-raises it
                    failures.append(error)

    writer = threading.Thread(target=load_chunks, name="population-loader", daemon=True)
    writer.start()
    drawn = False
    try:
        batch: tuple[list, list, list, list] = ([], [], [], [])
        for household, people, cards, defects in generator.households(citizens):
            batch[0].append(household)
            batch[1].extend(people)
            batch[2].extend(cards)
            batch[3].extend(defects)
            if len(batch[1]) >= CHUNK_CITIZENS:
                if failures:
                    break
                chunks.put(batch)
                batch = ([], [], [], [])
        chunks.put(batch)
        drawn = True
    finally:
        chunks.put(None)
        writer.join()
        if failures or not drawn:
            loader.abort()  # one transaction: nothing of a failed generation stays
    if failures:
        raise failures[0]
    loader.finish()
    result.seconds = time.perf_counter() - started
    return result


def _flush(loader: _Loader, batch, result: GenerationResult, progress) -> None:
    households, people, cards, defects = batch
    loader.write("household", HOUSEHOLD_COLUMNS, households)
    loader.write("citizen", CITIZEN_COLUMNS, people)
    loader.write("id_card", CARD_COLUMNS, cards)
    loader.write("injected_defect", DEFECT_COLUMNS, defects)
    result.households += len(households)
    result.citizens += len(people)
    result.cards += len(cards)
    for d in defects:
        result.defects[d["defect_type"]] = result.defects.get(d["defect_type"], 0) + 1
    if progress is not None:
        progress(len(people))


def citizen_rows(citizens: int, seed: int, defect_rate: float = 0.0, as_of: date = DEFAULT_AS_OF) -> Iterator[tuple]:
    """The citizen rows ``generate`` would write, as tuples in CITIZEN_COLUMNS order (for benchmarks)."""
    for _, people, _, _ in PopulationGenerator(seed, as_of, defect_rate).households(citizens):
        for row in people:
            yield tuple(row[c] for c in CITIZEN_COLUMNS)


__all__ = ["DEFECT_TYPES", "GenerationResult", "PopulationGenerator", "citizen_rows", "generate"]
