"""One suite, three engines: every figure of the five priorities and the governance rules give
the same results whether a node is a DuckDB file (the reference), a PostgreSQL database or
Parquet on Spark.

Three nodes move to the engine under test: acute trust RSA, GP practice Y90001 and local
authority 701; the other nodes stay on DuckDB, so ICB views federate across engines. Each
priority's figures object is built as its report template builds it and every public method
that takes no required argument is called; every released table (after disclosure control)
must equal DuckDB's. A gap is declared on the test or case that shows it (``notimpl``,
``notyet``, ``never``: tests/conftest.py), with the error it raises, so a gap that closes fails
the suite and is noticed.
"""

from __future__ import annotations

import datetime as dt
import inspect
import os
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path

import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.errors import FdpError, GovernanceError
from fdp_kernel.figures import discharge as cc
from fdp_kernel.figures import supply as sc
from fdp_kernel.figures.elective import ElectiveFigures
from fdp_kernel.figures.population import PopulationFigures
from fdp_kernel.figures.vaccination import VaccinationFigures
from fdp_kernel.governance.released import Released
from tests.conftest import OPERATOR
from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures import spark as spark_fixtures
from tests.fixtures.engines import ENGINES, place_nodes

postgres_server = postgres_fixtures.postgres_server
spark_session = spark_fixtures.spark_session
pytestmark = pytest.mark.postgres

AS_OF = dt.date(2026, 10, 31)
PRACTICE = "Y90001"
MOVED = ("RSA", PRACTICE, "701")


def _figures(priority: str, org: str):
    """The figures object of a priority's report for ``org``, as its template builds it."""
    if priority == "elective":
        return ElectiveFigures(fdp_kernel.connect("elective_planning", org), AS_OF, 12)
    if priority == "vaccination":
        return VaccinationFigures(fdp_kernel.connect("vaccination_planning", org), AS_OF)
    if priority == "population":
        return PopulationFigures(fdp_kernel.connect("population_health_planning", org), AS_OF)
    if priority == "care":
        return cc.CareCoordinationFigures.open(org, AS_OF, 12)
    return sc.SupplyFigures.open(org, AS_OF, 12)


# (priority, org): the report views of each priority held by a moved node or built over one.
CASES = [
    ("elective", "RSA"),
    ("elective", "QSY"),
    ("vaccination", PRACTICE),
    ("vaccination", "QSY"),
    ("population", PRACTICE),
    ("population", "QSY"),
    ("care", "RSA"),
    ("care", "701"),
    ("care", "QSY"),
    ("supply", "RSA"),
    ("supply", "QSY"),
]


def _methods(figures) -> Iterator[tuple[str, Callable]]:
    for name, member in inspect.getmembers(type(figures), inspect.isfunction):
        if name.startswith("_") or name in {"open", "section", "provenance"}:
            continue
        params = list(inspect.signature(member).parameters.values())[1:]
        if all(p.default is not p.empty for p in params):
            yield name, getattr(figures, name)


def _frames(value) -> list[pd.DataFrame]:
    if isinstance(value, Released):
        return [value.data.reset_index(drop=True)]
    if isinstance(value, pd.DataFrame):
        return [value.reset_index(drop=True)]
    if isinstance(value, tuple | list):
        return [f for v in value for f in _frames(v)]
    if isinstance(value, dict):
        return [f for k in sorted(value) for f in _frames(value[k])]
    return []


def collect(priority: str, org: str) -> dict[str, list[pd.DataFrame] | str]:
    """Every released table of the priority's figures for ``org``. A method that does not
    apply to this view (an ICB-only table asked of a trust) or is refused is kept as its
    error text: the engines must then fail the same way."""
    figures = _figures(priority, org)
    out: dict[str, list[pd.DataFrame] | str] = {}
    for name, method in _methods(figures):
        try:
            out[name] = _frames(method())
        except (FdpError, KeyError, AttributeError) as exc:
            out[name] = f"{type(exc).__name__}: {exc}"
    return out


@contextmanager
def acting(fed: Path, user: str = OPERATOR) -> Iterator[None]:
    saved = {k: os.environ.get(k) for k in ("FDP_FEDERATION", "JUPYTERHUB_USER")}
    os.environ["FDP_FEDERATION"] = str(fed / "federation.yaml")
    os.environ["JUPYTERHUB_USER"] = user
    try:
        yield
    finally:
        for key, value in saved.items():
            if value is None:
                os.environ.pop(key, None)
            else:
                os.environ[key] = value


@pytest.fixture(scope="module")
def reference(federation) -> dict[tuple[str, str], dict]:
    """Every case on the all-DuckDB federation."""
    with acting(federation):
        return {case: collect(*case) for case in CASES}


@pytest.fixture(scope="module", params=ENGINES)
def placed(request, federation, tmp_path_factory) -> tuple[str, Path]:
    """A copy of the federation with RSA, the practice and 701 moved to the engine."""
    target = tmp_path_factory.mktemp(f"engines-{request.param}") / "fed"
    return request.param, place_nodes(request, federation, target, request.param, MOVED)


def _assert_same(got: dict, want: dict, where: str) -> None:
    assert set(got) == set(want), where
    assert sum(len(f) for f in want.values() if not isinstance(f, str)) >= 2, where
    for name, frames in want.items():
        if isinstance(frames, str):  # does not apply here, on DuckDB either
            assert got[name] == frames, f"{where}.{name}"
            continue
        assert not isinstance(got[name], str), f"{where}.{name}: {got[name]}"
        assert len(got[name]) == len(frames), f"{where}.{name}"
        for got_frame, want_frame in zip(got[name], frames, strict=True):
            pd.testing.assert_frame_equal(
                _ordered(got_frame), _ordered(want_frame), check_dtype=False, obj=f"{where}.{name}"
            )


def _ordered(frame: pd.DataFrame) -> pd.DataFrame:
    """Rows in one order: SQL engines return ties of a partial ORDER BY in any order."""
    if frame.empty:
        return frame
    keys = frame.astype("string").fillna("\x00")
    return frame.loc[keys.sort_values(list(keys.columns)).index].reset_index(drop=True)


@pytest.mark.parametrize("case", CASES, ids=["-".join(c) for c in CASES])
def test_every_figure_equals_duckdb(placed, reference, case):
    engine, fed = placed
    with acting(fed):
        try:
            got = collect(*case)
        except FdpError as exc:  # the figures object itself could not be built
            got = {"__init__": f"{type(exc).__name__}: {exc}"}
    _assert_same(got, reference[case], f"{engine}:{'/'.join(case)}")


def test_the_figures_read_the_moved_nodes(placed, reference):
    """Guard against a vacuous pass: the cases really run on the engine under test."""
    engine, fed = placed
    with acting(fed):
        ws = fdp_kernel.connect("elective_planning", "RSA")
        rtt = ws.table("rtt_pathways")
        assert ws._engines.engine_for("RSA").name == engine
        assert type(rtt.get_backend()).__name__ == {"spark": "GatedSpark"}.get(
            engine, "GatedPostgres"
        )


# -- governance rules, on every engine ------------------------------------------------------
def _ws(fed: Path, purpose: str, org: str, user: str = OPERATOR):
    with acting(fed, user):
        return fdp_kernel.connect(purpose, org)


def test_governed_tables_cannot_be_run_or_bypassed(placed):
    _engine, fed = placed
    ws = _ws(fed, "elective_planning", "RSA")
    rtt = ws.table("rtt_pathways")
    backend = rtt.get_backend()
    attempts = [
        rtt.execute,
        rtt.to_pandas,
        rtt.to_pyarrow,
        lambda: backend.sql("SELECT 1"),
        lambda: backend.raw_sql("SELECT 1"),
        lambda: backend.table("rtt_pathways"),
        lambda: backend.list_tables(),
    ]
    for attempt in attempts:
        with pytest.raises(GovernanceError, match=r"ws\.release"):
            attempt()


def test_own_rows_allowed_columns_and_no_identifiers(placed, federation):
    _engine, fed = placed
    ws = _ws(fed, "elective_planning", "RSA")
    rtt = ws.table("rtt_pathways")
    released = ws.release(rtt.group_by("org_code").agg(pathways=rtt.count()))
    assert list(released.data["org_code"]) == ["RSA"]
    with pytest.raises(GovernanceError, match="given_name"):
        ws.table("patients", columns=["nhs_number", "given_name"])
    patients = ws.table("patients")
    with pytest.raises(GovernanceError, match="direct identifier"):
        ws.release(patients.group_by("nhs_number").agg(n=patients.count()))
    with pytest.raises(GovernanceError, match="record-level rows are not released"):
        ws.release(patients.select("sex"))
    reference = _ws(federation, "elective_planning", "RSA")
    ref = reference.table("rtt_pathways")
    expected = reference.release(ref.group_by("org_code").agg(pathways=ref.count()))
    pd.testing.assert_frame_equal(released.data, expected.data, check_dtype=False)


def test_no_small_count_leaves_on_any_engine(placed):
    _engine, fed = placed
    ws = _ws(fed, "population_health_planning", PRACTICE)
    patients = ws.table("patients")
    fine = patients.group_by(["sex", "ethnicity", "imd_decile"]).agg(n=patients.count())
    released = ws.release(fine)
    shown = released.data["n"].dropna()
    assert not shown.between(1, 7).any() and released.n_suppressed > 0


def test_opted_out_patients_are_removed_for_planning(placed, federation):
    _engine, fed = placed
    counts = []
    for where in (fed, federation):
        ws = _ws(where, "population_health_planning", PRACTICE)
        patients = ws.table("patients")
        counts.append(ws.release(patients.agg(n=patients.count())).data["n"][0])
    raw = duckdb_count(federation, PRACTICE, "patients")
    assert counts[0] == counts[1] and counts[0] < raw


def duckdb_count(federation: Path, org: str, name: str) -> int:
    from tests.helpers import query

    store = next((federation / "stores").glob(f"{org}*.duckdb"))
    return query(store, f"SELECT count(*) FROM {name}")[0][0]


def test_pseudonyms_are_the_same_as_on_duckdb(placed, federation):
    """Each engine computes the keyed pseudonym in its own SQL (Spark SHA2, PostgreSQL
    sha256); it must equal DuckDB's, or linkage across engines would silently fail. Checked
    for the node's own purpose key and, where rows are shared, for the agreement's key."""
    _engine, fed = placed
    cases = [
        ("population_health_planning", PRACTICE, None),
        ("population_health_planning", "QSY", PRACTICE),  # the agreement's linkage key
    ]
    for purpose, org, source in cases:
        values = []
        for where in (fed, federation):
            ws = _ws(where, purpose, org)
            table = ws.table("patients", source=source, columns=["nhs_number", "sex"])
            with table.get_backend()._open_gate():  # looking under the gate, as a test may
                values.append(sorted(table.to_pandas()["nhs_number"]))
        assert values[0] == values[1] and len(values[0]) > 10, (purpose, org, source)
        assert all(len(v) == 20 for v in values[0])


def test_every_access_is_audited_at_the_node(placed):
    _engine, fed = placed
    from fdp_kernel.config import load_federation
    from fdp_kernel.governance.audit import AuditLog
    from fdp_kernel.governance.keys import audit_key

    loaded = load_federation(fed / "federation.yaml")
    log = AuditLog(loaded.audit_path("RSA"), audit_key(loaded))
    before = sum(1 for _ in log.entries())
    ws = _ws(fed, "elective_planning", "RSA")
    rtt = ws.table("rtt_pathways")
    ws.release(rtt.group_by("waiting_list_type").agg(n=rtt.count()))
    actions = [e["action"] for e in list(log.entries())[before:]]
    assert actions == ["connect", "table", "query", "release"]
    assert log.verify().ok


def test_fdp_synth_writes_nodes_to_spark_and_postgres(postgres_server, spark_session, tmp_path):
    import io

    from fdp_kernel.cli import main
    from fdp_kernel.config import load_federation

    database = postgres_server.create_database("synth_cli_rsc")
    out, err = io.StringIO(), io.StringIO()
    argv = ["synth", "--out", str(tmp_path / "fed"), "--patients", "800", "-q"]
    argv += ["--spark", "RSA", "--postgres", f"RSC={postgres_server.dsn(database=database)}"]
    assert main(argv, environ={}, out=out, err=err) == 0, err.getvalue()
    fed = load_federation(tmp_path / "fed")
    assert (fed.org("RSA").engine, fed.org("RSC").engine) == ("spark", "postgres")
    assert "@" not in str(fed.org("RSC").store)  # no owner login in the federation file
    from fdp_kernel.governance.policy import identify

    with acting(tmp_path / "fed", user=identify({})):  # synth's operator: the OS account
        for org in ("RSA", "RSC"):
            ws = fdp_kernel.connect("elective_planning", org)
            rtt = ws.table("rtt_pathways")
            assert ws.release(rtt.agg(n=rtt.count())).data["n"][0] > 0


def test_a_conditional_count_over_no_rows_is_zero(placed):
    """Ibis compiles count(where=...) for Spark as a SUM, NULL over no rows; ours gives 0."""
    _engine, fed = placed
    ws = _ws(fed, "elective_planning", "RSA")
    rtt = ws.table("rtt_pathways")
    none = rtt.filter(rtt.org_code == "nowhere")
    released = ws.release(
        none.agg(n=none.count(), admitted=none.count(where=none.tci_date.notnull()))
    )
    assert released.data.iloc[0].tolist() == [0, 0]


def test_releases_of_shared_rows_are_audited_at_the_provider(placed):
    """The local authority (moved with the trust) lists the trust's discharge-ready patients
    under the direct-care agreement: the provider's log records the query and release."""
    _engine, fed = placed
    from fdp_kernel.config import load_federation
    from fdp_kernel.governance.audit import AuditLog
    from fdp_kernel.governance.keys import audit_key

    ws = _ws(fed, "direct_care", "701")
    loaded = load_federation(fed / "federation.yaml")
    log = AuditLog(loaded.audit_path("RSA"), audit_key(loaded))
    before = sum(1 for _ in log.entries())
    spells = ws.table("inpatient_spells", source="RSA", columns=["spell_id", "org_code"])
    ws.release(spells.filter(spells.org_code == "RSA").limit(5))
    entries = list(log.entries())[before:]
    assert [e["action"] for e in entries] == ["table", "query", "release"]
    assert {e["agreement_id"] for e in entries} == {"DSA-DISCHARGE-DIRECT"}


def test_the_node_service_serves_nodes_on_the_engine(placed, services, monkeypatch):
    """PostgreSQL and Spark nodes are served by the same node service, with the same release
    step: their figures through the service equal the embedded ones."""
    from fdp_kernel.metrics import rtt as m

    engine, fed = placed

    def summary(node):
        return m.waiting_list_summary(node.table("rtt_pathways"), AS_OF)

    with acting(fed):
        embedded = fdp_kernel.connect("elective_planning", "QSY").federated(summary)
    monkeypatch.setenv("FDP_SERVICE", services.start(fed).location)
    monkeypatch.setenv("FDP_SERVICE_TOKEN", services.token(fed, OPERATOR))
    ws = fdp_kernel.connect("elective_planning", "RSA")
    assert ws.mode == "node service"
    own = ws.release(summary(ws))
    assert own.data.equals(
        embedded.data[embedded.data["org"] == "RSA"].drop(columns="org").reset_index(drop=True)
    )
    served = fdp_kernel.connect("elective_planning", "QSY").federated(summary)
    assert not served.partial, served.failed
    pd.testing.assert_frame_equal(served.data, embedded.data, check_dtype=False, obj=engine)
