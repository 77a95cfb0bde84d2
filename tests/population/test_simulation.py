from datetime import date

from sqlalchemy import func, select

from population.changelog import last_sequence
from population.db import session_factory
from population.generator import generate
from population.models import Change, Citizen
from population.simulation import DaySimulation

DAY = date(2026, 9, 2)


def test_a_day_of_events_changes_the_population_and_logs_every_change(engine):
    generate(engine, 2_000, seed=8, defect_rate=0.05)
    sessions = session_factory(engine)
    report = DaySimulation(sessions, seed=8, day=DAY).run(150)
    assert report.total_applied + sum(report.rejected.values()) + sum(report.no_candidate.values()) == 150
    assert report.total_applied > 100
    assert {"birth_registration", "death", "card_renewal"} <= set(report.applied)
    with sessions() as session:
        assert session.scalar(select(func.count()).select_from(Citizen)) == 2_000 + report.applied["birth_registration"]
        logged = dict(session.execute(select(Change.event_type, func.count()).group_by(Change.event_type)).all())
        assert last_sequence(session) == sum(logged.values())
    assert logged["birth_registration"] == report.applied["birth_registration"]
    assert logged["death"] == report.applied["death"]
    assert logged.get("marriage", 0) == 2 * report.applied.get("marriage", 0)


def test_the_same_seed_gives_the_same_day(tmp_path, sqlite_template):
    import shutil

    from population.db import create_population_engine

    outcomes = []
    for run in range(2):
        path = tmp_path / f"run{run}.db"
        shutil.copy(sqlite_template, path)
        engine = create_population_engine(f"sqlite:///{path}")
        generate(engine, 800, seed=3)
        report = DaySimulation(session_factory(engine), seed=5, day=DAY).run(60)
        outcomes.append((report.applied, report.rejected))
        engine.dispose()
    assert outcomes[0] == outcomes[1]
