"""The population health explorer (fdp_kernel.workbench) and the notebook
view of ``ws.catalog()`` (workbench.catalogue) against a generated federation (3,000 patients,
3 practices). Cohort counts are checked against a computation on the raw stores; what the
explorer shows against disclosure control; every update against the audit logs."""

from __future__ import annotations

import asyncio
import datetime as dt

import duckdb
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel import codes
from fdp_kernel.config import load_federation
from fdp_kernel.errors import UsageError
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.governance.released import Released
from fdp_kernel.metrics import population as mp
from fdp_kernel.metrics.vaccination import born_by
from fdp_kernel.workbench.catalogue import CatalogueFrame
from fdp_kernel.workbench.explorer import PopulationExplorer, practices_for, scopes_for
from fdp_kernel.workbench.population import (
    ALL,
    NOT_KNOWN,
    Selection,
    explorer_chart,
    figure_frame,
    headline,
    prevalence_query,
    shown,
)
from tests.conftest import OPERATOR
from tests.helpers import variant, verified

pytestmark = pytest.mark.filterwarnings("ignore::pandas.errors.Pandas4Warning")

PURPOSE = "population_health_planning"


@pytest.fixture(scope="module")
def as_of(federation) -> dt.date:
    return load_federation(federation / "federation.yaml").as_of


def _practices(federation) -> list[str]:
    fed = load_federation(federation / "federation.yaml")
    return [o.code for o in fed.organisations.values() if o.org_type == "gp_practice"]


def _rounded(n: int) -> int:
    return (2 * n + 5) // 10 * 5  # to the nearest 5, half up


def _released(n: int):
    """What disclosure control makes of an exact count: 0, <NA> (1-7), rounded to 5."""
    return pd.NA if 0 < n < 8 else _rounded(n)


# -- the reference: the raw stores, computed in pandas ------------------------------------------
def _age_band(dob: dt.date, day: dt.date) -> str | None:
    for label, low, _ in reversed(mp.AGE_BANDS):
        if dob <= born_by(day, low):
            return label
    return None


def _raw(federation, orgs: list[str], day: dt.date) -> tuple[pd.DataFrame, pd.DataFrame]:
    """People on the lists on ``day`` without a national data opt-out, with the explorer's
    breakdowns; and register entries recorded by ``day``."""
    fed = load_federation(federation / "federation.yaml")
    people, registers = [], []
    for code in orgs:
        con = duckdb.connect(str(fed.org(code).store), read_only=True)
        people.append(
            con.execute(
                "SELECT nhs_number, date_of_birth, ethnicity, imd_decile FROM patients "
                "WHERE org_code = ? AND NOT national_opt_out AND date_of_birth <= ? "
                "AND (date_of_death IS NULL OR date_of_death > ?)",
                [code, day, day],
            ).df()
        )
        registers.append(
            con.execute(
                "SELECT DISTINCT nhs_number, condition FROM ltc_registers "
                "WHERE org_code = ? AND (diagnosis_date IS NULL OR diagnosis_date <= ?)",
                [code, day],
            ).df()
        )
        con.close()
    p = pd.concat(people, ignore_index=True)
    p["date_of_birth"] = pd.to_datetime(p["date_of_birth"]).dt.date
    p["age_band"] = p["date_of_birth"].map(lambda d: _age_band(d, day))
    decile = p["imd_decile"].astype("Int64")
    p["deprivation"] = ((decile + 1) // 2).astype(object).where(decile.notna(), None)
    p["ethnic_group"] = p["ethnicity"].map(codes.ETHNIC_GROUP).fillna("Not stated or not known")
    return p, pd.concat(registers, ignore_index=True)


def _expected(raw, selection: Selection, day: dt.date, by: str | None = None) -> pd.DataFrame:
    people, registers = raw
    t = people
    for name, value in selection.filters(skip=by).items():
        t = t[t[name].astype(str) == str(value)]
    on = registers.loc[registers["condition"] == selection.condition, "nhs_number"]
    old = t["date_of_birth"] <= born_by(day, mp.REGISTER_MIN_AGE.get(selection.condition, 0))
    t = t.assign(register=(t["nhs_number"].isin(set(on)) & old).astype(int), list_size=old)
    if by is None:
        return pd.DataFrame([{"register": t["register"].sum(), "list_size": t["list_size"].sum()}])
    group = t[by].map(lambda v: NOT_KNOWN if v is None or pd.isna(v) else str(v))
    out = t.assign(group=group).groupby("group")[["register", "list_size"]].sum()
    return out.reset_index()


def _exact(ws, expr) -> pd.DataFrame:
    with expr.get_backend()._open_gate():  # look underneath release to compare exact counts
        return expr.to_pandas()


SELECTIONS = [
    Selection(),
    Selection(condition="DM", age_band="65-74"),
    Selection(condition="DEP", deprivation=1, ethnic_group="White"),
    Selection(condition="AST", age_band="0-17", compare_by="ethnic_group"),
    Selection(condition="CKD", ethnic_group="Asian", compare_by="age_band"),
]


@pytest.mark.parametrize("scope", ["practice", "icb"])
def test_cohort_counts_match_a_computation_on_the_raw_stores(act_as, federation, as_of, scope):
    act_as(OPERATOR)
    orgs = _practices(federation)
    org = "QSY" if scope == "icb" else orgs[0]
    ws = fdp_kernel.connect(purpose=PURPOSE, org=org)
    explorer = PopulationExplorer(ws, debounce=0)
    source = explorer._scope(org)
    assert source.practices == (orgs if scope == "icb" else [org])
    raw = _raw(federation, source.practices, as_of)
    for selection in SELECTIONS:
        args = (source.patients, source.registers, as_of, selection)
        total = _exact(ws, prevalence_query(*args))
        expected = _expected(raw, selection, as_of)
        assert total[["register", "list_size"]].to_dict("records") == expected.to_dict("records")
        by = selection.compare_by
        groups = _exact(ws, prevalence_query(*args, by=by)).sort_values("group")
        expected = _expected(raw, selection, as_of, by).sort_values("group")
        assert groups.to_dict("records") == expected.to_dict("records"), (selection, by)
        assert expected["list_size"].sum() > 0, "the selection has people in it"


def test_the_explorer_shows_released_figures_only(act_as, federation, as_of):
    act_as(OPERATOR)
    code = _practices(federation)[0]
    ws = fdp_kernel.connect(purpose=PURPOSE, org=code)
    explorer = PopulationExplorer(ws, debounce=0)
    raw = _raw(federation, [code], as_of)
    # A small cohort by ethnic group: several groups hold 1-7 people on the register.
    explorer.select(age_band="75-84", compare_by="ethnic_group")
    assert explorer.error is None, explorer.error
    selection = explorer.selection
    exact = _expected(raw, selection, as_of, "ethnic_group").set_index("group")
    frame = explorer.frame.set_index("group")
    released = explorer.released["by"].data.set_index("group")
    assert set(frame.index) == set(exact.index)
    small = exact.index[(exact["register"] > 0) & (exact["register"] < 8)]
    assert len(small), "the case needs a suppressed group"
    for group, row in exact.iterrows():
        want = _released(int(row["register"]))
        if pd.isna(want):
            assert pd.isna(released.loc[group, "register"])
            assert frame.loc[group, "register_text"] == "suppressed (<8)"
            assert pd.isna(frame.loc[group, "prevalence"])
        elif released.loc[group, "register"] is not pd.NA:  # shown unless secondary
            assert released.loc[group, "register"] == want
            assert frame.loc[group, "register_text"] == f"{want:,}"
    # The count shown is the released total, rounded to 5, never the exact figure.
    total = _expected(raw, selection, as_of).iloc[0]
    text = headline(explorer.released["total"])
    assert text["register"] == shown(_released(int(total["register"])), "")
    assert text["list_size"] == f"{_rounded(int(total['list_size'])):,}"
    assert f">{text['register']}</span>" in explorer.count.value
    # The chart draws exactly the released prevalences; suppressed groups are null and "*".
    values = explorer.chart.spec["datasets"]
    (rows,) = [v for v in values.values() if v and "prevalence" in v[0]]
    drawn = {r["group"]: r["prevalence"] for r in rows}
    for group in frame.index:
        pct = released.loc[group, "prevalence_pct"]
        assert drawn[group] == (None if pd.isna(pct) else pytest.approx(float(pct) / 100))
    assert {r["label"] for r in rows if r["prevalence"] is None} == {"*"}


def test_every_update_is_a_release_in_the_audit_logs(act_as, federation):
    act_as(OPERATOR)
    fed = load_federation(federation / "federation.yaml")
    practices = _practices(federation)

    def releases(code: str) -> list[dict]:
        entries = AuditLog(fed.audit_path(code)).entries()
        return [e for e in entries if e["action"] in ("query", "release")]

    ws = fdp_kernel.connect(purpose=PURPOSE, org="QSY")
    before = {c: len(releases(c)) for c in ["QSY", *practices]}
    explorer = PopulationExplorer(ws, debounce=0)
    explorer.controls["condition"].value = "COPD"  # an observed change, not select()
    explorer.select(age_band="50-64", deprivation=2)
    assert explorer.updates == 3 and explorer.error is None
    for code in ["QSY", *practices]:  # at the ICB and at every practice whose rows it read
        new = releases(code)[before[code] :]
        assert [e["action"] for e in new] == ["query", "release"] * 6, code
        assert {(e["user"], e["org"], e["purpose"]) for e in new} == {(OPERATOR, "QSY", PURPOSE)}
        assert {e["agreement_id"] for e in new} == {"DSA-PHM-ICB"}
    titles = [
        e["details"]["title"] for e in releases("QSY")[before["QSY"] :] if e["action"] == "release"
    ]
    assert titles[-2:] == [
        "Chronic obstructive pulmonary disease: aged 50-64, IMD quintile 2",
        "Chronic obstructive pulmonary disease by deprivation: aged 50-64",
    ]
    assert verified(federation, "QSY")
    # The releases are root aggregates, so the differencing ledger holds every cell shown.
    assert sum(len(cells) for cells in ws._ledger.cells.values()) >= 6


def test_a_refusal_is_shown_and_nothing_else(act_as, federation):
    def expire(doc):
        for a in doc["agreements"]:
            if a["id"] == "DSA-PHM-ICB":
                a["valid_from"], a["valid_to"] = dt.date(2022, 4, 1), dt.date(2025, 3, 31)

    act_as("icb.analyst", variant(federation, "phm-expired", expire))
    ws = fdp_kernel.connect(purpose=PURPOSE, org="QSY")
    explorer = PopulationExplorer(ws, debounce=0)
    assert explorer.error and "DSA-PHM-ICB" in explorer.error
    assert "Refused by governance" in explorer.status.value
    assert explorer.count.value == "" and explorer.chart.chart is None
    assert explorer.frame is None and explorer.released == {}
    assert explorer.summary().startswith("Refused: ")
    log = AuditLog(load_federation(federation / "federation.yaml").audit_path("QSY"))
    last = list(log.entries())[-1]
    assert (last["decision"], last["user"]) == ("deny", "icb.analyst")


def test_refusals_at_other_scopes_and_purposes(act_as, federation):
    act_as("icb.analyst")
    practice = _practices(federation)[0]
    # Vaccination planning shares only aggregates with the ICB: no practice rows to explore.
    ws = fdp_kernel.connect(purpose="vaccination_planning", org="QSY")
    refused = PopulationExplorer(ws, debounce=0)
    assert "aggregate level only" in refused.error and refused.count.value == ""
    # The analyst may offer a practice scope, but holds no role there: refused when chosen.
    ws = fdp_kernel.connect(purpose=PURPOSE, org="QSY")
    explorer = PopulationExplorer(ws, scopes=[practice], debounce=0)
    assert explorer.error is None and explorer.frame is not None
    explorer.select(scope=practice)
    assert f"holds no role at {practice}" in explorer.error
    assert explorer.frame is None and explorer.count.value == ""
    explorer.select(scope="QSY")  # back: figures again
    assert explorer.error is None and explorer.frame is not None


def test_scopes_and_practices_follow_roles_and_agreements(federation):
    fed = load_federation(federation / "federation.yaml")
    practices = _practices(federation)
    assert scopes_for(fed, OPERATOR, PURPOSE) == ["QSY", *practices]
    assert scopes_for(fed, "icb.analyst", PURPOSE) == ["QSY"]
    assert scopes_for(fed, "rsa.analyst", PURPOSE) == []
    assert practices_for(fed, PURPOSE, "QSY") == practices
    assert practices_for(fed, PURPOSE, "RSA") == []


def test_quick_changes_make_one_query(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose=PURPOSE, org=_practices(federation)[0])
    explorer = PopulationExplorer(ws, debounce=0.2)
    assert explorer.updates == 1

    async def clicks():
        explorer.controls["condition"].value = "DM"
        explorer.controls["age_band"].value = "65-74"
        explorer.controls["compare_by"].value = "age_band"
        assert explorer.updates == 1 and "Updating" in explorer.status.value
        await asyncio.sleep(0.6)

    asyncio.run(clicks())
    assert explorer.updates == 2
    assert explorer.released["total"].title.startswith("Diabetes mellitus (17+): aged 65-74")
    assert explorer.frame["selected"].sum() == 1


# -- pure functions --------------------------------------------------------------------------
def test_selection_validates_and_describes():
    with pytest.raises(UsageError, match="unknown register"):
        Selection(condition="XYZ")
    with pytest.raises(UsageError, match="deprivation must be"):
        Selection(deprivation=6)
    assert Selection(deprivation_column="imd_decile", deprivation=10).deprivation == 10
    s = Selection(age_band="85+", deprivation=1, ethnic_group="Black")
    assert s.describe() == "aged 85+, IMD quintile 1, Black"
    assert s.describe(skip="deprivation") == "aged 85+, Black"
    assert Selection().describe() == "everyone" and Selection().filters() == {}
    assert s.replace(age_band=ALL).filters() == {"deprivation": 1, "ethnic_group": "Black"}


def _release(rows: list[dict], hidden: list[dict]) -> Released:
    data = pd.DataFrame(rows)
    for c in ("register", "list_size"):
        data[c] = data[c].astype("Int64")
    data["prevalence_pct"] = data["prevalence_pct"].astype("Float64")
    return Released(data, pd.DataFrame(hidden), "t", "src", "note", 0)


def test_figure_frame_orders_groups_and_never_fills_in_a_suppressed_cell():
    ok = {"register": "", "list_size": "", "prevalence_pct": ""}
    small = {"register": "primary: 1-7", "list_size": "", "prevalence_pct": "component"}
    released = _release(
        [
            {"group": NOT_KNOWN, "register": 10, "list_size": 40, "prevalence_pct": 25.0},
            {"group": "2", "register": None, "list_size": 20, "prevalence_pct": None},
            {"group": "1", "register": 30, "list_size": 100, "prevalence_pct": 30.0},
        ],
        [ok, small, ok],
    )
    frame = figure_frame(released, Selection(deprivation=2), "deprivation")
    assert frame["group"].tolist() == ["1", "2", NOT_KNOWN]
    assert frame["register_text"].tolist() == ["30", "suppressed (<8)", "10"]
    assert frame["prevalence_text"].tolist() == ["30.0%", "suppressed", "25.0%"]
    assert frame["selected"].tolist() == [False, True, False]
    assert pd.isna(frame.loc[1, "prevalence"]) and frame.loc[0, "prevalence"] == 0.30
    chart = explorer_chart(frame, Selection(deprivation=2), "deprivation", released).to_dict()
    (data,) = [v for v in chart["datasets"].values()]
    assert [d["prevalence"] for d in data] == [0.3, None, 0.25]
    assert [d["label"] for d in data] == ["", "*", ""]
    assert "1 group suppressed" in " ".join(chart["vconcat"][0]["title"]["text"])
    assert shown(12, "secondary") == "suppressed (protects another cell)"
    assert shown(1234, "") == "1,234" and shown(None, "") == "-"
    with pytest.raises(UsageError, match="one-row release"):
        headline(released)


# -- ws.catalog() in a notebook -------------------------------------------------------------
def test_the_catalogue_reads_as_one_table_per_dataset(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    catalogue = ws.catalog()
    assert isinstance(catalogue, CatalogueFrame)
    assert catalogue.attrs == {"purpose": "elective_planning", "org": "RSA"}
    page = catalogue._repr_html_()
    assert "What elective_planning allows at RSA" in page
    assert page.count("<table") == catalogue["dataset"].nunique()
    allowed, closed = page.split("<details>")
    assert "<h4" in allowed and "rtt_pathways" in allowed and "patients" in allowed
    assert "vaccinations" not in page  # a trust does not hold them
    assert "inpatient_spells" in closed  # held, not allowed under elective planning
    assert "as a pseudonym" in page and "no (allowed by direct_care)" in page
    # Selections and derived frames are plain DataFrames, shown as pandas shows them.
    part = ws.catalog("patients")[["column", "this purpose"]]
    assert type(part) is pd.DataFrame and type(catalogue.set_index("column")) is pd.DataFrame
    assert "<details>" not in ws.catalog("patients")._repr_html_()
