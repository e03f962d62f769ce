"""Every refusal is audited with the rule that made it.

The package is read for every place that refuses: each ``GovernanceError(..., rule="...")``
and each deny ``Decision(False, "...", ...)``. Every rule named there must be listed in
``governance.rules.RULES``, and every refusal rule must have a scenario below that provokes it
through the public API, as an analyst would, and then finds the refusal in the audit log of
the node it concerns, with that rule and its reason. A new refusal without a scenario fails
``test_every_refusal_in_the_code_has_a_scenario``.
"""

from __future__ import annotations

import ast
import datetime as dt
import os
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path

import ibis
import pandas as pd
import pytest

import fdp_kernel
from fdp_kernel.errors import GovernanceError
from fdp_kernel.figures.vaccination import VaccinationFigures, call_list
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.governance.rules import RULES
from fdp_kernel.service.identity import Identity
from tests.conftest import OPERATOR
from tests.helpers import variant

PACKAGE = Path(fdp_kernel.__file__).parent
PRACTICE = "Y90001"
AS_OF = "2026-10-31"

# Refusal rules raised where no person's workspace is the boundary, and why.
EXEMPT = {
    "engine:policy-check": "apply_policy (an administrator's tool) aborts its own transaction "
    "before commit; the error it raises is the record",
    "report:refused": "fdp report run re-raises a refusal that the report's kernel recorded "
    "in its node's log (the scenario of that refusal covers it)",
}


def rules_in_the_code() -> dict[str, list[str]]:
    """Rule id -> where it is refused (file:line)."""
    found: dict[str, list[str]] = {}
    for path in sorted(PACKAGE.rglob("*.py")):
        for node in ast.walk(ast.parse(path.read_text())):
            if not isinstance(node, ast.Call):
                continue
            name = getattr(node.func, "id", getattr(node.func, "attr", None))
            rule = None
            if name == "GovernanceError":
                rule = next((k.value for k in node.keywords if k.arg == "rule"), None)
                assert rule is not None, f"{path}:{node.lineno}: GovernanceError without rule="
            elif name == "Decision" and len(node.args) >= 2:
                allowed, rule = node.args[0], node.args[1]
                if not (isinstance(allowed, ast.Constant) and allowed.value is False):
                    continue
            elif name == "deny" and node.args:
                rule = node.args[0]
            else:
                continue
            if isinstance(rule, ast.Constant) and isinstance(rule.value, str):
                where = f"{path.relative_to(PACKAGE.parent)}:{node.lineno}"
                found.setdefault(rule.value, []).append(where)
    return found


@dataclass
class Ctx:
    act_as: Callable
    federation: Path
    monkeypatch: pytest.MonkeyPatch
    services: object

    def service_ws(self, user=OPERATOR, purpose="elective_planning", org="RSA", token=None):
        """A thin client of the node service for this federation."""
        self.monkeypatch.setenv("FDP_SERVICE", self.services.start(self.federation).location)
        token = token or self.services.token(self.federation, user)
        self.monkeypatch.setenv("FDP_SERVICE_TOKEN", token)
        return fdp_kernel.connect(purpose=purpose, org=org)

    def registry(self):
        return self.services.start(self.federation).server.registry

    def ws(self, purpose: str, org: str, user: str = OPERATOR, fed: Path | None = None):
        self.act_as(user, fed)
        return fdp_kernel.connect(purpose=purpose, org=org)

    def variant(self, name: str, change) -> Path:
        return variant(self.federation, name, change)

    def key_variant(self, name: str, content: str, mode: int) -> Path:
        key = self.federation / "keys" / f"{name}.key"
        key.write_text(content)
        key.chmod(mode)
        return self.variant(name, lambda doc: _set_key(doc, "RSA", f"keys/{name}.key"))


def _set_key(doc, org: str, key: str | None) -> None:
    for entry in doc["organisations"]:
        if entry["code"] == org:
            if key is None:
                entry.pop("key", None)
            else:
                entry["key"] = key


def _agreement(doc, ident: str, **changes) -> None:
    for a in doc["agreements"]:
        if a["id"] == ident:
            a.update(changes)


def _drop_dataset(doc, ident: str, name: str) -> None:
    for a in doc["agreements"]:
        if a["id"] == ident:
            a["datasets"].pop(name)


def _rtt(ctx: Ctx):
    ws = ctx.ws("elective_planning", "RSA")
    return ws, ws.table("rtt_pathways")


def _query(node):
    rtt = node.table("rtt_pathways")
    return rtt.agg(n=rtt.count())


def _nested(node):
    node.federated(_query)


def _overlap(ctx: Ctx):
    ws = ctx.ws("vaccination_planning", PRACTICE, "gp.clinician")
    patients = ws.table("patients")
    ws.release(patients.group_by("sex").agg(people=patients.count()))
    sizes = ws.release(patients.group_by("ethnicity").agg(people=patients.count()))
    small = sizes.data.loc[sizes.data["people"].isna(), "ethnicity"].iloc[0]
    rest = patients.filter(patients.ethnicity != small)
    second = rest.group_by("sex").agg(people=rest.count())
    ws.release(second.filter(second.people >= 0))  # not the aggregate itself: refused whole


# rule -> (what provokes it, the node whose log records it; None for the federation log)
SCENARIOS: dict[str, tuple[Callable[[Ctx], object], str | None]] = {
    "identity:unknown-user": (lambda c: c.ws("elective_planning", "RSA", "nobody"), "RSA"),
    "identity:which-org": (lambda c: c.ws("elective_planning", None), None),
    "identity:no-role-at-org": (lambda c: c.ws("elective_planning", "RSB", "rsa.analyst"), "RSB"),
    "purpose:unknown": (lambda c: c.ws("no_such_purpose", "RSA", "rsa.analyst"), "RSA"),
    "purpose:not-held": (lambda c: c.ws("direct_care", "RSA", "rsa.analyst"), "RSA"),
    "purpose:dataset": (
        lambda c: c.ws("elective_planning", "RSA").table("inpatient_spells"),
        "RSA",
    ),
    "purpose:columns": (
        lambda c: c.ws("elective_planning", "RSA").table(
            "patients", columns=["nhs_number", "given_name"]
        ),
        "RSA",
    ),
    "node:not-held": (lambda c: c.ws("elective_planning", "QSY").table("rtt_pathways"), "QSY"),
    "agreement:none": (
        lambda c: c.ws("elective_planning", "RSA").table("rtt_pathways", source="RSB"),
        "RSB",
    ),
    "agreement:not-in-force": (
        lambda c: c.ws(
            "population_health_planning",
            "QSY",
            fed=c.variant(
                "expired",
                lambda d: _agreement(
                    d, "DSA-PHM-ICB", valid_from=dt.date(2020, 4, 1), valid_to=dt.date(2021, 3, 31)
                ),
            ),
        ).table("patients", source=PRACTICE),
        PRACTICE,
    ),
    "agreement:dataset": (
        lambda c: c.ws(
            "population_health_planning",
            "QSY",
            fed=c.variant(
                "no-registers",
                lambda d: _drop_dataset(d, "DSA-PHM-ICB", "ltc_registers"),
            ),
        ).table("ltc_registers", source=PRACTICE),
        PRACTICE,
    ),
    "agreement:columns": (
        lambda c: c.ws(
            "population_health_planning",
            "QSY",
            fed=c.variant(
                "two-columns",
                lambda d: _agreement(
                    d, "DSA-PHM-ICB", datasets={"patients": ["nhs_number", "sex"]}
                ),
            ),
        ).table("patients", source=PRACTICE, columns=["nhs_number", "imd_decile"]),
        PRACTICE,
    ),
    "agreement:aggregate-only": (
        lambda c: c.ws("elective_planning", "QSY").table("rtt_pathways", source="RSA"),
        "RSA",
    ),
    "key:missing": (
        lambda c: c.ws(
            "elective_planning", "RSA", fed=c.variant("no-key", lambda d: _set_key(d, "RSA", None))
        ).table("patients"),
        "RSA",
    ),
    "key:unreadable": (
        lambda c: c.ws(
            "elective_planning",
            "RSA",
            fed=c.variant("lost-key", lambda d: _set_key(d, "RSA", "keys/nowhere.key")),
        ).table("patients"),
        "RSA",
    ),
    "key:unprotected": (
        lambda c: c.ws(
            "elective_planning", "RSA", fed=c.key_variant("open", "ab" * 32 + "\n", 0o644)
        ).table("patients"),
        "RSA",
    ),
    "key:malformed": (
        lambda c: c.ws(
            "elective_planning", "RSA", fed=c.key_variant("garbled", "not a key\n", 0o600)
        ).table("patients"),
        "RSA",
    ),
    "catalog:not-held": (
        lambda c: c.ws("elective_planning", "RSA").catalog("vaccinations"),
        "RSA",
    ),
    "release:not-governed": (
        lambda c: c.ws("elective_planning", "RSA").release(
            ibis.table({"n": "int64"}, name="rtt_pathways").agg(k=lambda t: t.count())
        ),
        "RSA",
    ),
    "release:untraceable": (
        lambda c: (
            lambda ws, t: ws.release(
                t.group_by("treatment_function_code")
                .agg(n=t.count())
                .mutate(total=t.count().as_scalar())
            )
        )(*_rtt(c)),
        "RSA",
    ),
    "release:identifier": (
        lambda c: (lambda ws, t: ws.release(t.group_by("nhs_number").agg(n=t.count())))(*_rtt(c)),
        "RSA",
    ),
    "release:fine-quasi-identifier": (
        lambda c: (
            lambda ws: ws.release(
                ws.table("patients").group_by("date_of_birth").agg(n=lambda t: t.count())
            )
        )(c.ws("vaccination_planning", PRACTICE, "gp.clinician")),
        PRACTICE,
    ),
    "release:rows": (
        lambda c: (
            lambda ws, t: ws.release(
                t.select("treatment_function_code", n=ibis.literal(1)), counts=["n"]
            )
        )(*_rtt(c)),
        "RSA",
    ),
    "release:no-measure": (
        lambda c: (lambda ws, t: ws.release(t.select("treatment_function_code")))(*_rtt(c)),
        "RSA",
    ),
    "release:overlap": (_overlap, PRACTICE),
    "disclosure:unchecked": (
        lambda c: c.ws("elective_planning", "RSA").release(pd.DataFrame({"rate": [0.5]})),
        "RSA",
    ),
    "listing:direct-care-only": (
        lambda c: call_list(c.ws("vaccination_planning", PRACTICE, "gp.clinician"), AS_OF),
        PRACTICE,
    ),
    "view:other-organisation": (
        lambda c: VaccinationFigures(
            c.ws("vaccination_planning", PRACTICE, "gp.clinician"), pd.Timestamp(AS_OF).date()
        ).league("flu_65_plus"),
        PRACTICE,
    ),
    "engine:direct-access": (lambda c: _rtt(c)[1].execute(), "RSA"),
    "federated:no-provider": (
        lambda c: c.ws("elective_planning", "RSA").federated(_query),
        "RSA",
    ),
    "federated:own-node": (
        lambda c: _partial(c.ws("elective_planning", "QSY").federated(_query, orgs=["QSY"])),
        "QSY",
    ),
    "federated:nested": (
        lambda c: _partial(c.ws("elective_planning", "QSY").federated(_nested, orgs=["RSA"])),
        "RSA",
    ),
    "federated:node-failed": (
        lambda c: _partial(
            c.ws(
                "elective_planning",
                "QSY",
                fed=c.variant("lost-store", lambda d: _store(d, "RSB", "stores/nowhere.duckdb")),
            ).federated(_query, orgs=["RSB"])
        ),
        "RSB",
    ),
    "report:secret": (lambda c: _secret_report(c), "RSA"),
    "release:record-value": (
        lambda c: (
            lambda ws, t: ws.release(
                t.group_by("treatment_function_code").agg(latest=t.rtt_start_date.max())
            )
        )(*_rtt(c)),
        "RSA",
    ),
    "release:derived": (
        lambda c: (
            lambda ws, t: ws.release(
                t.group_by("treatment_function_code")
                .agg(n=t.count())
                .mutate(twice=lambda q: q.n * 2)
            )
        )(*_rtt(c)),
        "RSA",
    ),
    "release:spec": (
        lambda c: (
            lambda ws, t: ws.release(
                t.group_by("treatment_function_code").agg(n=t.count()), dimensions=["n"]
            )
        )(*_rtt(c)),
        "RSA",
    ),
    "release:operation": (lambda c: _udf_release(c.service_ws()), "RSA"),
    "identity:unauthenticated": (lambda c: c.service_ws(token="no-such-token"), None),
    "identity:token-expired": (
        lambda c: c.service_ws(
            token=c.registry().issue(Identity(OPERATOR, "person", "t"), hours=-1)[0]
        ),
        None,
    ),
    "identity:not-a-person": (
        lambda c: c.service_ws(
            token=c.registry().issue(Identity("icb", "service", "token file"))[0]
        ),
        None,
    ),
    "service:session": (lambda c: _someone_elses_session(c), "RSA"),
    "service:peer": (lambda c: _rogue_peer(c), None),
    "federated:exact-partials": (
        lambda c: (lambda node: node.partial(_query(node)))(
            c.ws("elective_planning", "QSY").node("RSA")
        ),
        "RSA",
    ),
}


def _udf_release(ws):
    rtt = ws.table("rtt_pathways")

    @ibis.udf.scalar.python
    def leak(value: str) -> str:
        return value

    ws.release(rtt.group_by(x=leak(rtt.nhs_number)).agg(n=rtt.count()))


def _someone_elses_session(ctx: Ctx):
    theirs = ctx.service_ws(OPERATOR)
    mine = ctx.service_ws("rsa.analyst")
    mine._session = theirs._session
    try:
        mine.table("rtt_pathways")
    finally:
        mine._session = None
    return None


def _rogue_peer(ctx: Ctx):
    """A service the federation file does not list relays a request: refused."""
    from fdp_kernel.service.client import Channel

    token, _ = ctx.registry().issue(Identity("rogue", "service", "token file"))
    location = ctx.services.start(ctx.federation).location
    body = {"kind": "node", "org": "RSA", "requester": "QSY", "purpose": "elective_planning",
            "user": "icb.analyst", "agreement": "DSA-ELECTIVE-ICB", "expr": {}}  # fmt: skip
    Channel(location, token).get(body)


# Refusals that reach the person otherwise than as a raised error (a federated request reports
# declined and failed nodes; a report command exits 5): their scenarios check that themselves.
NOT_RAISED = {"federated:own-node", "federated:nested", "federated:node-failed", "report:secret"}


def _store(doc, org: str, store: str) -> None:
    for entry in doc["organisations"]:
        if entry["code"] == org:
            entry["store"] = store


def _secret_report(ctx: Ctx):
    """A report whose page would show the node's key is refused before it is saved (the
    command exits 5) and the refusal is recorded at the node."""
    from fdp_kernel.cli import main

    key = (ctx.federation / "keys" / "RSA.key").read_text().strip()
    ctx.monkeypatch.setenv("FDP_TEST_LEAK", f"key={key}")  # the template prints it
    templates = Path(__file__).parent / "report_templates"
    argv = ["report", "run", "leaky", "--org", "RSA", "--templates", str(templates)]
    argv += ["--federation", str(ctx.federation), "--run", "refusal", "--out"]
    argv += [str(ctx.federation / "reports"), "-q"]
    assert main(argv, environ=dict(os.environ)) == GovernanceError.exit_code


def _partial(result):
    assert result.partial, result.outcomes
    return result


def last_deny(federation: Path, org: str | None) -> dict:
    name = f"{org}.jsonl" if org else "federation.jsonl"
    entries = list(AuditLog(federation / "audit" / name).entries())
    return next(e for e in reversed(entries) if e["decision"] == "deny")


def test_every_rule_the_code_names_is_listed():
    unknown = {r: w for r, w in rules_in_the_code().items() if r not in RULES}
    assert not unknown, f"rules used but not in governance.rules.RULES: {unknown}"


def test_every_refusal_in_the_code_has_a_scenario():
    missing = {
        rule: where
        for rule, where in rules_in_the_code().items()
        if rule not in SCENARIOS and rule not in EXEMPT
    }
    assert not missing, f"refusals with no audit scenario in this file: {missing}"


@pytest.mark.parametrize("rule", sorted(SCENARIOS))
def test_the_refusal_is_audited_with_its_rule(rule, act_as, federation, monkeypatch, services):
    provoke, org = SCENARIOS[rule]
    ctx = Ctx(act_as, federation, monkeypatch, services)
    if rule in NOT_RAISED:
        provoke(ctx)
    else:
        with pytest.raises(GovernanceError) as err:
            provoke(ctx)
        assert err.value.rule == rule, f"{rule}: refused by {err.value.rule}: {err.value}"
    entry = last_deny(federation, org)
    assert entry["rule"] == rule, entry
    assert entry["reason"], entry
