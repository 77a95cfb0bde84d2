from datetime import date

from sqlalchemy import func, inspect, select

from population.admin_units import legacy_province, province_in_force, ward_in_force
from population.db import create_population_engine, session_factory
from population.migrate import current_revision, downgrade, head_revision, upgrade
from population.models import AdministrativeUnit, Base

BEFORE, AFTER = date(2025, 6, 30), date(2025, 7, 1)


def test_upgrade_creates_every_model_table_and_downgrade_removes_them(tmp_path):
    engine = create_population_engine(f"sqlite:///{tmp_path / 'fresh.db'}")
    assert current_revision(engine) is None
    upgrade(engine)
    assert current_revision(engine) == head_revision()
    assert set(Base.metadata.tables) <= set(inspect(engine).get_table_names())
    downgrade(engine, "base")
    assert current_revision(engine) is None
    assert not set(Base.metadata.tables) & set(inspect(engine).get_table_names())
    upgrade(engine)  # and back again
    assert current_revision(engine) == head_revision()


def test_catalogue_holds_units_with_effective_dates(engine):
    with session_factory(engine)() as session:

        def in_force(level: str, on: date) -> int:
            return session.scalar(
                select(func.count()).where(
                    AdministrativeUnit.level == level,
                    AdministrativeUnit.effective_from <= on,
                    (AdministrativeUnit.effective_to.is_(None)) | (AdministrativeUnit.effective_to >= on),
                )
            )

        assert in_force("province", BEFORE) == 63
        assert in_force("province", AFTER) == 34
        assert in_force("ward", AFTER) == 3_321
        assert in_force("ward", BEFORE) == 0  # the pre-reform communes are not in the catalogue
        # the same code before and after the reform
        assert province_in_force(session, "01", BEFORE).name == "Hà Nội"
        assert province_in_force(session, "01", AFTER).name == "Thành phố Hà Nội"
        assert province_in_force(session, "02", BEFORE).name == "Hà Giang"
        assert province_in_force(session, "02", AFTER) is None  # merged into Tuyên Quang
        assert ward_in_force(session, "00070", AFTER).name == "Phường Hoàn Kiếm"
        assert legacy_province(session, "079").name == "Hồ Chí Minh"
        assert legacy_province(session, "003") is None
