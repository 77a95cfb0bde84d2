"""What the population looks like: counts, structure against the census, cards, defects, change log."""

from __future__ import annotations

from collections import Counter
from datetime import UTC, date, datetime

from sqlalchemy import func, select
from sqlalchemy.orm import Session

from population import reference_data as ref
from population.events import age_on
from population.models import Change, ChangeLogHead, Citizen, Household, IdCard, InjectedDefect, RegistryLink


def population_stats(session: Session, as_of: date | None = None) -> dict:
    as_of = as_of or datetime.now(UTC).date()
    citizens = session.scalar(select(func.count()).select_from(Citizen)) or 0
    dead = session.scalar(select(func.count()).where(Citizen.date_of_death.is_not(None))) or 0
    households = session.scalar(select(func.count()).select_from(Household)) or 0
    by_sex = dict(session.execute(select(Citizen.sex, func.count()).group_by(Citizen.sex)).all())
    surnames: Counter[str] = Counter()
    bands: Counter[int] = Counter()
    for full_name, dob in session.execute(
        select(Citizen.full_name, Citizen.date_of_birth).execution_options(yield_per=20_000)
    ):
        surnames[full_name.split(" ", 1)[0]] += 1
        if dob is not None:
            age = age_on(dob, as_of)
            if age >= 0:
                bands[ref.age_band(age)] += 1
    ethnic_names = {code: name for code, name, _ in ref.ETHNIC_GROUPS}
    ethnicity = session.execute(
        select(Citizen.ethnicity_code, func.count()).group_by(Citizen.ethnicity_code).order_by(func.count().desc())
    ).all()
    dated = sum(bands.values()) or 1
    return {
        "citizens": citizens,
        "living": citizens - dead,
        "dead": dead,
        "households": households,
        "mean_household_size": round(
            (session.scalar(select(func.count()).where(Citizen.household_id.is_not(None))) or 0) / households,
            2,
        )
        if households
        else 0.0,
        "males_per_100_females": round(100 * by_sex.get("M", 0) / by_sex["F"], 1) if by_sex.get("F") else None,
        "top_surnames": [(name, round(n / citizens, 4)) for name, n in surnames.most_common(8)] if citizens else [],
        "ethnic_groups": [
            (ethnic_names.get(code or "", "(missing)"), round(n / citizens, 4)) for code, n in ethnicity[:6]
        ]
        if citizens
        else [],
        "age_bands": [
            {"band": f"{lo}-{hi}", "share": round(bands[i] / dated, 4), "census": round(m + f, 4)}
            for i, (lo, hi, m, f) in enumerate(ref.AGE_SEX_STRUCTURE)
        ],
        "id_cards": dict(session.execute(select(IdCard.status, func.count()).group_by(IdCard.status)).all()),
        "registry_links": session.scalar(select(func.count()).select_from(RegistryLink)) or 0,
        "injected_defects": dict(
            session.execute(select(InjectedDefect.defect_type, func.count()).group_by(InjectedDefect.defect_type)).all()
        ),
        "change_log": {
            "last_sequence": session.scalar(select(ChangeLogHead.last_sequence)) or 0,
            "by_event": dict(
                session.execute(select(Change.event_type, func.count()).group_by(Change.event_type)).all()
            ),
        },
    }
