"""Federation: code goes to the data; nothing crosses nodes without an agreement."""

from __future__ import annotations

import datetime as dt

import duckdb
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.catalog import table as catalogue_table
from fdp_kernel.config import load_federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.governance.disclosure import DisclosureRules, apply_disclosure_control, infer_spec
from fdp_kernel.metrics import rtt as m
from tests.conftest import OPERATOR
from tests.helpers import peeking, variant, verified

AS_OF = dt.date(2026, 10, 31)
TRUSTS = ["RSA", "RSB", "RSC"]


BOTH_MODES = True  # every test here runs embedded and through the node service


def summary(node):
    return m.waiting_list_summary(node.table("rtt_pathways"), AS_OF)


def entries(federation, org):
    return list(AuditLog(federation / "audit" / f"{org}.jsonl").entries())


def test_the_icb_view_equals_the_union_of_the_data_after_disclosure_control(act_as, federation):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(summary, title="ICB waiting list")
    assert not result.partial and list(result.data["org"]) == TRUSTS

    # The same figures from the union of the trusts' data (own rows, opt-outs removed).
    fed = load_federation(federation)
    con = duckdb.connect()
    parts = []
    for code in TRUSTS:
        con.execute(f"ATTACH '{fed.org(code).store}' AS n{code} (READ_ONLY)")
        parts.append(
            f"SELECT r.* FROM n{code}.rtt_pathways r WHERE r.org_code = '{code}' AND r.nhs_number "
            f"NOT IN (SELECT nhs_number FROM n{code}.patients WHERE national_opt_out)"
        )
    union = " UNION ALL ".join(parts)
    exact = con.execute(
        f"SELECT org_code AS org, count(*) AS waiting_list, "
        f"count(*) FILTER (WHERE date_diff('day', rtt_start_date, DATE '{AS_OF}') <= 126) "
        f"AS within_18_weeks FROM ({union}) WHERE rtt_start_date <= DATE '{AS_OF}' "
        f"AND (rtt_end_date IS NULL OR rtt_end_date > DATE '{AS_OF}') "
        "AND rtt_period_status <> '33' GROUP BY ALL ORDER BY org"
    ).df()
    expected = apply_disclosure_control(exact, infer_spec(exact), DisclosureRules()).data
    got = result.data[["org", "waiting_list", "within_18_weeks"]].reset_index(drop=True)
    pd.testing.assert_frame_equal(got, expected, check_dtype=False)


def test_nodes_without_an_agreement_are_declined_and_the_result_is_partial(act_as, federation):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(summary, orgs=["RSA", "RSD", "Y90001"])
    assert list(result.data["org"]) == ["RSA"]
    assert result.partial
    assert set(result.declined) == {"RSD", "Y90001"}
    assert "no data sharing agreement lets RSD share with QSY" in result.declined["RSD"]
    assert entries(federation, "RSD")[-1]["decision"] == "deny", "the declining node audits it"
    assert "PARTIAL" in result.caption


def test_an_expired_agreement_declines_with_its_dates(act_as, federation):
    def expire(doc):
        for a in doc["agreements"]:
            if a["id"] == "DSA-ELECTIVE-ICB":
                a["valid_from"], a["valid_to"] = dt.date(2022, 4, 1), dt.date(2025, 3, 31)

    act_as("icb.analyst", variant(federation, "elective-expired", expire))
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(summary)
    assert result.data.empty and set(result.declined) == set(TRUSTS)
    assert "not in force" in result.declined["RSA"] and "2025-03-31" in result.declined["RSA"]


def test_a_failing_node_is_reported_never_dropped(act_as, federation):
    def break_store(doc):
        for o in doc["organisations"]:
            if o["code"] == "RSC":
                o["store"] = "stores/missing.duckdb"

    act_as("icb.analyst", variant(federation, "broken", break_store))
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(summary)
    assert list(result.data["org"]) == ["RSA", "RSB"]
    assert result.partial and "RSC" in result.failed and "missing" in result.failed["RSC"]


def test_every_federated_request_is_audited_at_the_requester_and_each_node(act_as, federation):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    ws.federated(summary, title="audited")
    requester = entries(federation, "QSY")[-1]
    assert requester["action"] == "federated" and requester["agreement_id"] == "DSA-ELECTIVE-ICB"
    assert requester["details"]["ok"] == TRUSTS
    for code in TRUSTS:
        node = entries(federation, code)[-1]
        assert node["action"] == "release" and node["agreement_id"] == "DSA-ELECTIVE-ICB"
        assert node["details"]["requester"] == "QSY" and node["user"] == "icb.analyst"
        assert verified(federation, code)


def test_a_query_written_once_against_the_catalogue(act_as):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    rtt = catalogue_table("rtt_pathways")
    query = rtt.group_by("waiting_list_type").agg(pathways=rtt.count())
    result = ws.federated(query, orgs=TRUSTS)
    assert set(result.data["org"]) == set(TRUSTS)
    assert set(result.data["waiting_list_type"]) == {"IRTT", "ORTT"}


def test_nodes_apply_the_agreement_not_just_the_purpose(act_as):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(
        lambda node: node.table("inpatient_spells").agg(n=lambda t: t.count()), orgs=["RSA"]
    )
    assert result.declined["RSA"].startswith("purpose elective_planning does not allow")


def test_linkage_uses_a_pseudonym_keyed_per_agreement(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="population_health_planning", org="QSY")
    with peeking(ws, ws.table("patients", source="Y90001")) as practice:  # test-only look
        gp_ids = set(practice.nhs_number.to_pandas())
    with peeking(ws, ws.table("inpatient_spells", source="RSA")) as spells:
        trust_ids = set(spells.nhs_number.to_pandas())
    assert gp_ids & trust_ids, "the same people link across nodes inside one agreement"
    raw = {
        r
        for r in duckdb.connect(
            str(load_federation(federation).org("Y90001").store), read_only=True
        )
        .execute("SELECT nhs_number FROM patients")
        .fetchall()
    }
    assert not gp_ids & {r[0] for r in raw}, "pseudonymised, not identifiable"

    def second_agreement(doc):
        for a in list(doc["agreements"]):
            if a["id"] == "DSA-PHM-ICB":
                doc["agreements"].remove(a)
                doc["agreements"].append(
                    {**a, "id": "DSA-PHM-ICB-2", "key": "keys/agreements/DSA-DISCHARGE-DIRECT.key"}
                )

    act_as(OPERATOR, variant(federation, "two-agreements", second_agreement))
    other = fdp_kernel.connect(purpose="population_health_planning", org="QSY")
    with peeking(other, other.table("patients", source="Y90001")) as theirs:
        other_ids = set(theirs.nhs_number.to_pandas())
    assert not other_ids & gp_ids, "pseudonyms do not link across two agreements"


def test_transparency_pages_list_agreements_and_controlled_counts(act_as, federation, tmp_path):
    from fdp_kernel.cli import main
    from fdp_kernel.reports.html import find_external_resources

    act_as("icb.analyst")
    fdp_kernel.connect(purpose="elective_planning", org="QSY").federated(summary)
    code = main(["transparency", "--federation", str(federation), "--out", str(tmp_path)])
    assert code == 0
    page = (tmp_path / "index.html").read_text()
    assert "DSA-ELECTIVE-ICB" in page and "2026-04-01 to 2029-03-31" in page
    assert "UK GDPR" in page and "national data opt-out" in page
    trust = (tmp_path / "RSA.html").read_text()
    assert "Elective recovery planning" in trust and "DSA-DISCHARGE-DIRECT" in trust
    assert find_external_resources(page) == [] and find_external_resources(trust) == []
    from fdp_kernel.transparency import activity

    fed = load_federation(federation)
    use = activity(fed, list(fed.organisations), dt.date(2020, 1, 1), dt.date.today())
    assert use.loc[use["purpose"] == "Elective recovery planning", "releases"].iloc[0] != 0
    for column in ("accesses", "releases", "refusals"):
        shown = pd.to_numeric(use[column].replace("*", None)).dropna()
        assert not shown.between(1, 7).any() and (shown % 5 == 0).all()


def test_icb_totals_are_lower_bounds_where_a_node_suppressed_its_figure(act_as):
    from fdp_kernel.figures.common import combine_nodes

    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    result = ws.federated(summary)
    combined = combine_nodes(result, [], ["waiting_list", "over_78_weeks"])
    per_node = result.data["over_78_weeks"]
    shown = combined.display()["over_78_weeks"].iloc[0]
    if per_node.isna().any() and per_node.notna().any():
        assert shown == f"≥{int(per_node.sum())}"
    assert combined.data["waiting_list"].iloc[0] == result.data["waiting_list"].sum()
    assert ws.provenance()["agreements"] == ["DSA-ELECTIVE-ICB"]
    assert ws.provenance()["nodes"] == TRUSTS


def _exact_partials(doc):
    for a in doc["agreements"]:
        if a["id"] == "DSA-ELECTIVE-ICB":
            a["exchange"] = "exact_partials"


def test_exact_partials_are_combined_then_released_once(act_as, federation):
    """Under an agreement that lets exact partials pass, the ICB total is the exact sum over
    the trusts, rounded once: never a lower bound where a trust would have suppressed."""
    exact = {}
    act_as(OPERATOR)
    for trust in TRUSTS:
        trust_ws = fdp_kernel.connect(purpose="elective_planning", org=trust)
        with peeking(trust_ws, trust_ws.table("rtt_pathways")) as rtt:
            exact[trust] = m.waiting_list_summary(rtt, AS_OF).to_pandas().iloc[0]
    act_as("icb.analyst", variant(federation, "exact-partials", _exact_partials))
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    combined = ws.federated(
        lambda node: m.waiting_list_summary(node.table("rtt_pathways"), AS_OF),
        combine_by=(),
        percentages={"pct_within_18_weeks": ("within_18_weeks", "waiting_list")},
    )
    total = sum(int(exact[t]["waiting_list"]) for t in TRUSTS)
    assert combined.data["waiting_list"].iloc[0] == (2 * total + 5) // 10 * 5
    assert not combined.suppressed.apply(lambda c: c.str.startswith("lower bound")).any().any()
    over_78 = sum(int(exact[t]["over_78_weeks"]) for t in TRUSTS)
    if 1 <= over_78 <= 7:
        assert pd.isna(combined.data["over_78_weeks"].iloc[0])
    node = entries(federation, "RSA")[-1]
    assert (node["action"], node["rule"]) == ("partial", "release:exact-partial")
    icb = entries(federation, "QSY")[-1]
    assert icb["details"]["exchange"] == "exact_partials" and icb["details"]["nodes"] == TRUSTS


@pytest.mark.embedded_only  # a node workspace is the service's, not the client's, in service mode
def test_without_the_agreements_say_so_each_node_releases_its_own(act_as):
    act_as("icb.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    combined = ws.federated(summary, combine_by=())
    assert combined.source.startswith("federated")  # a sum of node-released figures
    node = ws.node("RSA")
    with pytest.raises(GovernanceError) as err:
        node.partial(summary(node))
    assert err.value.rule == "federated:exact-partials"
