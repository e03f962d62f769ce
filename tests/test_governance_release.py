"""Release: disclosure control on real governed data, totals, overlapping releases, and the
properties that must hold whatever is asked."""

from __future__ import annotations

import ibis
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

import fdp_kernel
from fdp_kernel.errors import GovernanceError, UsageError
from tests.conftest import OPERATOR

GROUPINGS = ["sex", "ethnicity", "imd_decile", "registered_practice"]


BOTH_MODES = True  # every test here runs embedded and through the node service


@pytest.fixture
def practice_ws(act_as):
    act_as(OPERATOR)
    return fdp_kernel.connect(purpose="vaccination_planning", org="Y90001")


def _margins_ok(frame, dims, col):
    """In every margin group with more than one cell, 0 or at least 2 cells are hidden."""
    for d in dims:
        others = [c for c in dims if c != d]
        groups = frame.groupby(others, dropna=False) if others else [(None, frame)]
        for _, g in groups:
            hidden = int(g[col].isna().sum())
            assert len(g) == 1 or hidden != 1, f"a lone suppressed cell along {d}"


def test_small_counts_are_suppressed_and_cannot_be_recovered_from_totals(practice_ws):
    patients = practice_ws.table("patients")
    expr = patients.group_by(["sex", "ethnicity"]).agg(people=patients.count())
    released = practice_ws.release(expr)
    people = released.data["people"]
    assert people.isna().any(), "small ethnic groups at one practice must be suppressed"
    shown = people.dropna()
    assert ((shown == 0) | (shown >= 10)).all() and (shown % 5 == 0).all()
    _margins_ok(released.data, ["sex", "ethnicity"], "people")
    assert "*" in released.display()["people"].tolist()
    assert "suppressed" in released.caption


def test_a_small_group_cannot_be_had_by_differencing_two_releases(practice_ws):
    patients = practice_ws.table("patients")
    everyone = practice_ws.release(patients.group_by("sex").agg(people=patients.count()))
    assert everyone.data["people"].notna().all()
    # All but one small ethnic group: the difference would be that group's size.
    sizes = practice_ws.release(patients.group_by("ethnicity").agg(people=patients.count()))
    small = sizes.data.loc[sizes.data["people"].isna(), "ethnicity"].iloc[0]
    rest = patients.filter(patients.ethnicity != small)
    second = practice_ws.release(rest.group_by("sex").agg(people=rest.count()))
    hidden = second.suppressed["people"]
    assert hidden.str.startswith("overlap").any(), second.suppressed


def test_statistics_bases_are_counted_by_the_pipeline_not_declared(practice_ws):
    """A mean or median is checked against the records that contribute to it, counted by the
    release pipeline itself: declaring a base changes nothing, and a group too small is
    hidden whatever is declared."""
    patients = practice_ws.table("patients")
    age = ibis.date("2026-10-31").delta(patients.date_of_birth, unit="day").cast("float64")
    expr = patients.group_by("ethnicity").agg(
        people=patients.count(), mean_days=age.mean(), median_days=age.median()
    )
    plain = practice_ws.release(expr)
    declared = practice_ws.release(expr, statistics={"mean_days": "people"})
    ordered = [r.data.sort_values("ethnicity").reset_index(drop=True) for r in (plain, declared)]
    assert ordered[0].equals(ordered[1])
    assert plain.data["mean_days"].notna().any() and plain.data["mean_days"].isna().any()
    small = plain.suppressed["people"].str.startswith("primary")
    assert plain.data.loc[small, ["mean_days", "median_days"]].isna().all().all()
    assert not any(c.startswith("_fdp_") for c in plain.data.columns), "helpers never leave"


@settings(
    max_examples=25, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(
    dims=st.lists(st.sampled_from(GROUPINGS), min_size=1, max_size=2, unique=True),
    decile_cut=st.integers(1, 10),
)
def test_no_released_count_is_ever_1_to_7(practice_ws, dims, decile_cut):
    patients = practice_ws.table("patients")
    subset = patients.filter(patients.imd_decile <= decile_cut)
    released = practice_ws.release(subset.group_by(dims).agg(people=subset.count()))
    shown = released.data["people"].dropna()
    assert not shown.between(1, 7).any()
    assert (shown % 5 == 0).all()


REQUESTS = st.tuples(
    st.sampled_from(["rsa.analyst", "la.discharge", "gp.clinician", "icb.analyst", "nobody"]),
    st.sampled_from(["elective_planning", "direct_care", "vaccination_planning", "nope"]),
    st.sampled_from(["RSA", "RSB", "701", "Y90001", "QSY"]),
    st.sampled_from(["patients", "rtt_pathways", "vaccinations", "inpatient_spells"]),
    st.sampled_from([None, ["nhs_number"], ["given_name"], ["sex"]]),
)


@settings(
    max_examples=60, deadline=None, suppress_health_check=[HealthCheck.function_scoped_fixture]
)
@given(request=REQUESTS)
def test_a_denied_request_never_returns_rows(act_as, request):
    user, purpose, org, name, columns = request
    act_as(user)
    try:
        ws = fdp_kernel.connect(purpose=purpose, org=org)
        table = ws.table(name, columns=columns)
    except (GovernanceError, UsageError) as refused:
        assert str(refused)
        return
    # Allowed: the user holds the purpose at the org and the purpose allows what was asked.
    assert purpose in {
        p for r in ws.federation.users[user].roles if r.org == org for p in r.purposes
    }
    assert ws.purpose.allows(name) and set(table.columns) <= set(ws.purpose.datasets[name])


def test_filtered_counts_in_one_release_cannot_difference_a_small_group(practice_ws):
    """Two counts under conditions that differ by a small group, in one release: the second
    is hidden (each filtered count is a cell of its own in the differencing check)."""
    patients = practice_ws.table("patients")
    sizes = practice_ws.release(patients.group_by("ethnicity").agg(people=patients.count()))
    small = sizes.data.loc[sizes.data["people"].isna(), "ethnicity"].iloc[0]
    released = practice_ws.release(
        patients.group_by("sex").agg(
            everyone=patients.count(where=patients.sex.notnull()),
            all_but_one_group=patients.count(where=patients.ethnicity != small),
        )
    )
    reasons = released.suppressed["all_but_one_group"]
    assert reasons.str.startswith("overlap").any(), released.suppressed


def test_a_sum_is_a_magnitude_with_helpers_nobody_supplies(practice_ws):
    """An integer sum is not a count, and helper columns the requester computes are never
    trusted: contributors and the largest contributions come from the pipeline itself."""
    from fdp_kernel.governance.disclosure import Magnitude

    patients = practice_ws.table("patients")

    def by_group(**extra):
        expr = patients.group_by("ethnicity").agg(
            deciles=patients.imd_decile.cast("int64").sum(), people=patients.count(), **extra
        )
        return expr

    honest = practice_ws.release(by_group())
    forged = practice_ws.release(  # forged helpers: 1,000 contributors, no large values
        by_group(fake_n=patients.count() * 0 + 1000, fake_top=patients.count() * 0),
        magnitudes={"deciles": Magnitude("fake_n", "fake_top", "fake_top")},
    )
    key = "ethnicity"
    a, b = (r.data.sort_values(key).reset_index(drop=True) for r in (honest, forged))
    assert a.equals(b) and list(b.columns) == list(a.columns), "forged helpers change nothing"
    assert honest.suppressed["deciles"].str.startswith("magnitude").any()
    shown = honest.data["deciles"].dropna()
    assert shown.empty or not (shown % 5 == 0).all(), "a magnitude is not rounded as a count"


def test_identifiers_may_link_and_be_counted_but_not_tested(practice_ws):
    patients = practice_ws.table("patients")
    ok = practice_ws.release(patients.agg(people=patients.nhs_number.nunique()))
    assert len(ok) == 1
    one = patients.nhs_number == "9434765919"
    for expr in (
        patients.agg(n=patients.count(where=one)),
        patients.filter(one).agg(n=lambda t: t.count()),
        patients.filter(patients.nhs_number.length() > 3).agg(n=lambda t: t.count()),
    ):
        with pytest.raises(GovernanceError) as err:
            practice_ws.release(expr)
        assert err.value.rule == "release:identifier"


@pytest.mark.embedded_only  # through the service, a UDF never leaves the client
def test_a_udf_never_sees_governed_rows_not_even_in_a_condition(practice_ws):
    seen = []

    @ibis.udf.scalar.python
    def spy(value: str) -> bool:
        seen.append(value)
        return True

    patients = practice_ws.table("patients")
    with pytest.raises(GovernanceError) as err:
        practice_ws.release(patients.agg(n=patients.count(where=spy(patients.sex))))
    assert err.value.rule == "release:operation" and not seen


def test_a_refusal_never_quotes_a_value(practice_ws):
    import pandas as pd

    with pytest.raises(GovernanceError) as err:
        practice_ws.release(pd.DataFrame({"group": ["a", "b"], "n": [-997, 12]}))
    assert "997" not in str(err.value) and "row 0" in str(err.value)
