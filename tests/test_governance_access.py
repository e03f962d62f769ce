"""Governed access: identity, purposes, own rows, columns, opt-outs, pseudonyms, agreements.

Each test tries to get past a rule through the public API and checks that the attempt is
refused (or neutralised) and audited.
"""

from __future__ import annotations

import datetime as dt
import json

import pytest

import fdp_kernel
from fdp_kernel.config import load_federation
from fdp_kernel.errors import GovernanceError
from fdp_kernel.governance.audit import AuditLog
from tests.conftest import OPERATOR
from tests.helpers import peeking, query, variant, verified

BOTH_MODES = True  # every test here runs embedded and through the node service


def last(fed_dir, org="RSA", n=1):
    entries = list(AuditLog(fed_dir / "audit" / f"{org}.jsonl").entries())
    return entries[-n:] if n > 1 else entries[-1]


def test_identity_comes_from_the_environment_and_maps_to_roles(act_as, federation):
    act_as("rsa.analyst")
    ws = fdp_kernel.connect(purpose="elective_planning")  # one org: org may be left out
    assert (ws.user, ws.org) == ("rsa.analyst", "RSA")
    entry = last(federation)
    assert (entry["action"], entry["decision"], entry["user"]) == (
        "connect",
        "allow",
        "rsa.analyst",
    )


def test_a_purpose_or_org_the_user_does_not_hold_is_refused_listing_what_they_hold(
    act_as, federation
):
    act_as("rsa.analyst")
    with pytest.raises(GovernanceError, match="they hold: elective_planning"):
        fdp_kernel.connect(purpose="direct_care", org="RSA")
    assert last(federation)["decision"] == "deny"
    with pytest.raises(GovernanceError, match="their organisations are: RSA"):
        fdp_kernel.connect(purpose="elective_planning", org="RSB")
    act_as("nobody")
    with pytest.raises(GovernanceError, match="'nobody' has no role"):
        fdp_kernel.connect(purpose="elective_planning", org="RSA")


def test_only_the_organisations_own_rows(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    released = ws.release(rtt.group_by("org_code").agg(pathways=rtt.count()))
    assert released.data["org_code"].tolist() == ["RSA"]
    sneaky = ws.release(rtt.filter(rtt.org_code == "RSB").agg(pathways=lambda t: t.count()))
    assert sneaky.data["pathways"].tolist() == [0]
    with pytest.raises(GovernanceError, match="no data sharing agreement lets RSB share"):
        ws.table("rtt_pathways", source="RSB")
    denied = last(federation)
    assert denied["decision"] == "deny" and denied["details"]["request"] == "table"
    assert last(federation, "RSB")["decision"] == "deny", "the provider's log records it too"


def test_a_dataset_or_column_outside_the_purpose_names_what_would_allow_it(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    with pytest.raises(GovernanceError, match=r"allowed by purpose.*care_coordination_planning"):
        ws.table("inpatient_spells")
    with pytest.raises(GovernanceError, match=r"given_name is allowed by purpose.*direct_care"):
        ws.table("patients", columns=["nhs_number", "given_name"])
    assert "given_name" not in ws.table("patients").columns
    assert last(federation)["action"] == "table"


def test_opted_out_patients_are_removed_for_planning_and_kept_for_direct_care(act_as, federation):
    act_as(OPERATOR)
    store = load_federation(federation).org("RSA").store
    everyone, opted_out = query(
        store, "SELECT count(*), count(*) FILTER (WHERE national_opt_out) FROM patients"
    )[0]
    assert opted_out > 0
    pathways_of_opted_out = query(
        store,
        "SELECT count(*) FROM rtt_pathways r JOIN patients p USING (nhs_number) "
        "WHERE p.national_opt_out",
    )[0][0]
    all_pathways = query(store, "SELECT count(*) FROM rtt_pathways")[0][0]
    planning = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    care = fdp_kernel.connect(purpose="direct_care", org="RSA")
    rules_off = {"counts": ["n"]}

    def exact(ws, name):
        with peeking(ws, ws.table(name)) as t:  # underneath release, to compare exact counts
            return t.count().to_pandas()

    assert exact(planning, "patients") == everyone - opted_out
    assert exact(care, "patients") == everyone
    assert exact(planning, "rtt_pathways") == all_pathways - pathways_of_opted_out
    assert exact(care, "rtt_pathways") == all_pathways
    assert rules_off  # the public path is release(); the gate peek above is test-only


def test_identifiers_are_keyed_pseudonyms_that_differ_by_purpose(act_as, federation):
    act_as(OPERATOR)
    store = load_federation(federation).org("RSA").store
    raw = {r[0] for r in query(store, "SELECT nhs_number FROM patients")}
    seen = {}
    for purpose in ("elective_planning", "population_health_planning", "direct_care"):
        ws = fdp_kernel.connect(purpose=purpose, org="RSA")
        with peeking(ws, ws.table("patients")) as t:
            seen[purpose] = set(t.nhs_number.to_pandas())
    assert seen["direct_care"] <= raw, "direct care sees real NHS numbers"
    assert not seen["elective_planning"] & raw, "planning never sees a real NHS number"
    assert not seen["elective_planning"] & seen["population_health_planning"], (
        "pseudonyms must not link across purposes"
    )
    assert all(len(p) == 20 for p in seen["elective_planning"])


def test_raw_identifiers_cannot_come_out_through_a_join_or_an_expression(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    rtt, patients = ws.table("rtt_pathways"), ws.table("patients")
    joined = rtt.join(patients, "nhs_number")
    ok = ws.release(joined.group_by("sex").agg(pathways=joined.count()))
    assert set(ok.data["sex"]) <= {"F", "M", "I"}
    attempts = [
        joined.group_by("nhs_number").agg(n=joined.count()),
        rtt.group_by(prefix=rtt.nhs_number.substr(0, 3)).agg(n=rtt.count()),
        rtt.group_by("treatment_function_code").agg(x=rtt.pathway_id.max()),
        rtt.group_by("treatment_function_code").agg(x=rtt.nhs_number.length().sum()),
        rtt.select("nhs_number", "rtt_start_date"),
        patients.select("sex", "ethnicity"),
        patients.group_by("date_of_birth").agg(n=patients.count()),
    ]
    for expr in attempts:
        with pytest.raises(GovernanceError):
            ws.release(expr)
        assert last(federation)["decision"] == "deny"


@pytest.mark.parametrize(
    "run",
    [
        lambda t: t.execute(),
        lambda t: t.to_pandas(),
        lambda t: t.to_pyarrow(),
        lambda t: t.head().execute(),
        lambda t: t._find_backend().raw_sql("SELECT * FROM node_RSA.patients"),
        lambda t: t._find_backend().table("patients", database="node_RSA"),
        lambda t: t._find_backend().sql("SELECT 1"),
        lambda t: t.to_csv("/tmp/leak.csv"),
    ],
)
def test_governed_tables_cannot_be_run_except_through_release(act_as, run):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    with pytest.raises(GovernanceError, match=r"ws.release"):
        run(ws.table("patients"))


def test_an_expression_from_another_workspace_is_refused(act_as):
    act_as(OPERATOR)
    a = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    b = fdp_kernel.connect(purpose="direct_care", org="RSA")
    identifiable = b.table("patients")
    with pytest.raises(GovernanceError, match="not a governed table of this workspace"):
        a.release(identifiable.group_by("sex").agg(n=identifiable.count()))


def test_row_level_sharing_under_an_agreement_shows_only_agreed_columns(act_as, federation):
    act_as("la.discharge")
    ws = fdp_kernel.connect(purpose="direct_care", org="701")
    spells = ws.table("inpatient_spells", source="RSA")
    assert set(spells.columns) == {
        "org_code", "spell_id", "nhs_number", "admission_date", "discharge_ready_date",
        "discharge_date", "discharge_pathway", "nctr_reason",
    }  # fmt: skip
    listing = ws.release(spells.filter(spells.discharge_ready_date.notnull()).limit(5))
    assert listing.listing and len(listing) == 5
    assert last(federation, "701")["agreement_id"] == "DSA-DISCHARGE-DIRECT"
    assert last(federation, "RSA")["agreement_id"] == "DSA-DISCHARGE-DIRECT"
    with pytest.raises(GovernanceError, match="does not allow inpatient_spells column"):
        ws.table("inpatient_spells", source="RSA", columns=["died_in_hospital"])


def test_an_expired_agreement_is_refused(act_as, federation):
    def expire(doc):
        for a in doc["agreements"]:
            if a["id"] == "DSA-DISCHARGE-DIRECT":
                a["valid_from"], a["valid_to"] = dt.date(2023, 4, 1), dt.date(2025, 3, 31)

    act_as("la.discharge", variant(federation, "expired", expire))
    ws = fdp_kernel.connect(purpose="direct_care", org="701")
    with pytest.raises(GovernanceError, match=r"DSA-DISCHARGE-DIRECT.*not in force.*2025-03-31"):
        ws.table("inpatient_spells", source="RSA")


def test_aggregate_agreements_never_hand_over_rows(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")
    with pytest.raises(GovernanceError, match=r"aggregate level only.*ws.federated"):
        ws.table("rtt_pathways", source="RSA")


def test_a_missing_key_means_refusal_never_unkeyed_hashing(act_as, federation, tmp_path):
    def drop_key(doc):
        for o in doc["organisations"]:
            if o["code"] == "RSA":
                del o["key"]

    act_as(OPERATOR, variant(federation, "nokey", drop_key))
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    with pytest.raises(GovernanceError, match="no pseudonymisation key"):
        ws.table("patients")
    assert ws.table("rtt_pathways", columns=["treatment_function_code"]) is not None


def test_a_key_readable_by_others_is_not_used(act_as, federation):
    key = federation / "keys" / "RSC.key"
    key.chmod(0o644)
    try:
        act_as(OPERATOR)
        ws = fdp_kernel.connect(purpose="elective_planning", org="RSC")
        with pytest.raises(GovernanceError, match="chmod 600"):
            ws.table("patients")
    finally:
        key.chmod(0o600)


@pytest.mark.parametrize(
    "name",
    ["patients; DROP TABLE patients", "rtt_pathways' OR '1'='1", 'x" FROM node_RSA.patients --'],
)
def test_sql_injection_through_names_is_neutralised(act_as, federation, name):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    with pytest.raises(Exception, match="no dataset"):
        ws.table(name)
    with pytest.raises(Exception, match="has no column"):
        ws.table("patients", columns=[name])
    store = load_federation(federation).org("RSA").store
    assert query(store, "SELECT count(*) FROM patients")[0][0] > 0


def test_sql_injection_through_parameters_is_neutralised(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    evil = "110' OR '1'='1"
    released = ws.release(
        rtt.filter(rtt.treatment_function_code == evil).agg(pathways=lambda t: t.count())
    )
    assert released.data["pathways"].tolist() == [0], "the value is bound, not spliced into SQL"


def test_every_decision_is_audited_with_user_org_purpose_and_reason(act_as, federation):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    ws.release(rtt.group_by("waiting_list_type").agg(n=rtt.count()), title="by type")
    query_entry, release_entry = last(federation, n=2)
    assert query_entry["action"] == "query" and len(query_entry["details"]["sql_sha256"]) == 64
    assert query_entry["details"]["row_count"] >= 1
    assert release_entry["action"] == "release" and release_entry["details"]["title"] == "by type"
    for entry in (query_entry, release_entry):
        assert entry["user"] == OPERATOR and entry["org"] == "RSA"
        assert entry["purpose"] == "elective_planning" and entry["reason"]
    assert verified(federation, "RSA")
    assert "secret" not in json.dumps(ws.provenance()).lower()


def test_the_catalogue_shows_what_the_purpose_allows(act_as):
    act_as(OPERATOR)
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    seen = ws.catalog("patients").set_index("column")["this purpose"]
    assert seen["nhs_number"] == "pseudonym"
    assert seen["sex"] == "as is"
    assert seen["given_name"].startswith("not shown (allowed by direct_care")
    assert set(ws.catalog()["dataset"]) >= {"rtt_pathways", "patients", "products"}
    with pytest.raises(GovernanceError, match="does not hold vaccinations"):
        ws.catalog("vaccinations")
