"""The demo preset (100k patients) looks like NHS data: ranges from DOMAIN.md.

One federation is generated for this module (about 6 seconds). Each check names the published
figure it is held against; the ranges are wide enough for sampling noise at this size.
"""

from __future__ import annotations

import duckdb
import pytest

from fdp_kernel.config import load_federation
from fdp_kernel.synth import generate_federation


@pytest.fixture(scope="module")
def demo(tmp_path_factory):
    out = tmp_path_factory.mktemp("demo")
    generate_federation(out, patients=100_000, seed=42)
    fed = load_federation(out)
    con = duckdb.connect()
    for org in fed.organisations.values():
        con.execute(f"ATTACH '{org.store}' AS \"n_{org.code}\" (READ_ONLY)")

    def union(table, types):
        parts = [
            f'SELECT * FROM "n_{o.code}".{table}'
            for o in fed.organisations.values()
            if o.org_type in types
        ]
        con.execute(f"CREATE OR REPLACE VIEW {table} AS " + " UNION ALL ".join(parts))

    union("patients", ("gp_practice",))
    union("ltc_registers", ("gp_practice",))
    union("vaccinations", ("gp_practice",))
    for t in (
        "rtt_pathways",
        "outpatient_appointments",
        "inpatient_spells",
        "bed_occupancy",
        "purchase_orders",
        "consumption",
        "products",
    ):
        union(t, ("acute_trust",))
    con.execute(f"SET VARIABLE as_of = DATE '{fed.as_of}'")
    yield fed, con
    con.close()


def one(con, sql):
    return con.execute(sql).fetchone()[0]


def test_population_size_and_practices(demo):
    fed, con = demo
    assert one(con, "SELECT count(*) FROM patients") == 100_000
    assert 35 <= len(fed.orgs_of_type("gp_practice")) <= 45


def test_age_sex_structure(demo):
    _, con = demo
    # England: ~18.6% aged 65+, ~51% female.
    over_65 = one(
        con,
        "SELECT avg((date_diff('day', date_of_birth, getvariable('as_of')) "
        ">= 65 * 365.25)::int) FROM patients",
    )
    female = one(con, "SELECT avg((sex = 'F')::int) FROM patients")
    assert 0.14 <= over_65 <= 0.22
    assert 0.49 <= female <= 0.54


def test_opt_out_ethnicity_and_deprivation(demo):
    _, con = demo
    assert 0.04 <= one(con, "SELECT avg(national_opt_out::int) FROM patients") <= 0.07
    assert 0.60 <= one(con, "SELECT avg((ethnicity = 'A')::int) FROM patients") <= 0.82
    most = one(con, "SELECT avg((imd_decile <= 2)::int) FROM patients")
    least = one(con, "SELECT avg((imd_decile >= 9)::int) FROM patients")
    assert most > least, "the demo ICB is skewed towards deprivation"


def _prevalence_by_deprivation(con, condition):
    return con.execute(
        "SELECT avg((l.nhs_number IS NOT NULL)::int) FILTER (WHERE p.imd_decile <= 2), "
        "avg((l.nhs_number IS NOT NULL)::int) FILTER (WHERE p.imd_decile >= 9) "
        "FROM patients p LEFT JOIN ltc_registers l ON l.nhs_number = p.nhs_number "
        f"AND l.condition = '{condition}'"
    ).fetchone()


@pytest.mark.parametrize(
    "condition, low, high",
    [("HYP", 0.11, 0.18), ("DM", 0.05, 0.09), ("COPD", 0.012, 0.028), ("AF", 0.014, 0.03)],
)
def test_register_prevalence_near_qof(demo, condition, low, high):
    _, con = demo
    n = one(con, f"SELECT count(*) FROM ltc_registers WHERE condition = '{condition}'")
    assert low <= n / 100_000 <= high


def test_deprivation_gradient_in_prevalence(demo):
    _, con = demo
    deprived, affluent = _prevalence_by_deprivation(con, "COPD")
    assert deprived > 1.3 * affluent


def test_rtt_waits_have_long_tails_near_national_figures(demo):
    _, con = demo
    row = con.execute(
        "WITH open AS (SELECT date_diff('day', rtt_start_date, getvariable('as_of')) AS d "
        "FROM rtt_pathways WHERE rtt_end_date IS NULL AND rtt_period_status <> '33') "
        "SELECT count(*), avg((d <= 126)::int), count(*) FILTER (WHERE d > 364), "
        "count(*) FILTER (WHERE d > 455), count(*) FILTER (WHERE d > 546) FROM open"
    ).fetchone()
    total, within_18, over_52, over_65, over_78 = row
    assert 0.09 <= total / 100_000 <= 0.16, "England's list is ~13% of the population"
    assert 0.55 <= within_18 <= 0.72, "England: ~62% within 18 weeks (Sep 2025)"
    assert 0.005 <= over_52 / total <= 0.05, "England: ~2% over 52 weeks"
    assert over_65 > 0 and over_78 > 0, "some breaches of 65 and 78 weeks"
    assert over_78 < over_65 < over_52


def test_dna_rate_and_its_deprivation_gradient(demo):
    _, con = demo
    overall = one(
        con,
        "SELECT count(*) FILTER (WHERE attendance_status = '3') / "
        "count(*) FILTER (WHERE attendance_status IN ('3','5','6')) "
        "FROM outpatient_appointments",
    )
    assert 0.05 <= overall <= 0.10, "national outpatient DNA rate ~6-8%"


def test_flu_uptake_by_cohort_and_deprivation(demo):
    _, con = demo
    rows = con.execute(
        "WITH eligible AS (SELECT nhs_number, (imd_decile + 1) // 2 AS q FROM patients "
        "WHERE date_diff('day', date_of_birth, DATE '2026-03-31') >= 65 * 365.25 "
        "AND (date_of_death IS NULL OR date_of_death > DATE '2026-02-28')), "
        "vaccinated AS (SELECT DISTINCT nhs_number FROM vaccinations WHERE programme = 'flu' "
        "AND vaccination_date BETWEEN DATE '2025-09-01' AND DATE '2026-02-28') "
        "SELECT q, avg((v.nhs_number IS NOT NULL)::int) FROM eligible e "
        "LEFT JOIN vaccinated v USING (nhs_number) GROUP BY ROLLUP (q) ORDER BY q NULLS LAST"
    ).fetchall()
    by_quintile = dict(rows)
    assert 0.70 <= by_quintile[None] <= 0.80, "flu 65+ 2024/25: 74.9%"
    assert by_quintile[5] - by_quintile[1] >= 0.05, "uptake falls with deprivation"


def test_childhood_coverage_near_cover(demo):
    _, con = demo
    six_in_one_12m = one(
        con,
        "WITH kids AS (SELECT nhs_number FROM patients WHERE date_diff('day', date_of_birth, "
        "getvariable('as_of')) BETWEEN 366 AND 730) SELECT avg((v.n IS NOT NULL)::int) FROM kids "
        "LEFT JOIN (SELECT nhs_number, 1 AS n FROM vaccinations WHERE procedure_code = "
        "'1082441000000108' AND dose_sequence = 3) v USING (nhs_number)",
    )
    assert 0.84 <= six_in_one_12m <= 0.96, "6-in-1 at 12 months 2023/24: 91.2%"


def test_discharge_delays_with_reasons_and_occupancy(demo):
    _, con = demo
    delayed_without_reason = one(
        con,
        "SELECT count(*) FROM inpatient_spells WHERE discharge_ready_date IS NOT NULL "
        "AND discharge_date > discharge_ready_date AND nctr_reason IS NULL",
    )
    assert delayed_without_reason == 0
    nctr_now = one(
        con,
        "SELECT count(*) FROM inpatient_spells WHERE discharge_date IS NULL "
        "AND discharge_ready_date IS NOT NULL",
    )
    assert nctr_now > 0
    occupancy = one(con, "SELECT sum(ga_beds_occupied) / sum(ga_beds_available) FROM bed_occupancy")
    assert 0.85 <= occupancy <= 0.99, "G&A occupancy runs near the 92% planning assumption"
    pathways = dict(
        con.execute(
            "SELECT discharge_pathway, count(*) FROM inpatient_spells WHERE discharge_date IS NOT "
            "NULL AND discharge_pathway IS NOT NULL GROUP BY ALL"
        ).fetchall()
    )
    assert set(pathways) == {0, 1, 2, 3}
    assert pathways[0] > pathways[1] > pathways[2] > pathways[3]


def test_stock_outs_and_price_variation_across_trusts(demo):
    _, con = demo
    assert one(con, "SELECT count(*) FROM consumption WHERE units_unmet > 0") > 0
    spread = one(
        con,
        "SELECT max(hi / lo) FROM (SELECT npc, max(p) hi, min(p) lo FROM (SELECT org_code, npc, "
        "avg(unit_price) p FROM purchase_orders GROUP BY ALL) GROUP BY npc HAVING count(*) > 1)",
    )
    assert spread > 1.05, "the same product costs different trusts different prices"
