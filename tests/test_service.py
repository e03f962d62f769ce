"""The node service, from a thin client in this process: identity from the connection, tokens,
sessions bound to their person, the allow-listed expression encoding, the sandboxed engine,
and read-only workspaces. (Attempts from another OS account, where monkeypatching the client
cannot touch the service: tests/test_service_accounts.py.)"""

from __future__ import annotations

import base64
import getpass
import io
import json
import os
import subprocess
import sys
import time
from pathlib import Path

import ibis
import pyarrow as pa
import pytest

import fdp_kernel
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.governance.audit import AuditLog
from fdp_kernel.service import client as service_client
from fdp_kernel.service import codec
from fdp_kernel.service.identity import Identity
from tests.conftest import OPERATOR
from tests.fixtures.service import RUNNING, federation_file
from tests.helpers import variant

ACCOUNT = getpass.getuser()


@pytest.fixture(scope="module")
def service(services, federation):
    return services.start(federation)


@pytest.fixture
def connect(monkeypatch, services, federation, service):
    """connect(user) through the service with a token the service issued for ``user``."""
    monkeypatch.delenv("FDP_SERVICE_TOKEN", raising=False)
    monkeypatch.setenv("FDP_SERVICE", service.location)

    def _connect(user: str = OPERATOR, purpose="elective_planning", org="RSA", fed=None):
        token = services.token(fed or federation, user)
        if fed is not None:
            monkeypatch.setenv("FDP_SERVICE", services.start(fed).location)
        monkeypatch.setenv("FDP_SERVICE_TOKEN", token)
        return fdp_kernel.connect(purpose=purpose, org=org)

    return _connect


def entries(federation: Path, log: str = "RSA") -> list[dict]:
    return list(AuditLog(federation / "audit" / f"{log}.jsonl").entries())


# -- identity -------------------------------------------------------------------------------------
def test_identity_is_the_os_account_of_the_connecting_process(monkeypatch, services, federation):
    """No token given: the service reads the kernel's OS account from the socket. The
    environment (JUPYTERHUB_USER, FDP_FEDERATION) changes nothing."""

    def as_account(doc):
        for user in doc["users"]:
            if user["id"] == "rsa.analyst":
                user["accounts"] = [ACCOUNT]

    fed = variant(federation, "os-account", as_account)
    monkeypatch.setenv("FDP_SERVICE", services.start(fed).location)
    monkeypatch.delenv("FDP_SERVICE_TOKEN", raising=False)
    monkeypatch.setenv("JUPYTERHUB_USER", OPERATOR)  # an identity claim the service ignores
    ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    assert ws.user == "rsa.analyst" and ws.mode == "node service"
    assert entries(federation)[-1]["user"] == "rsa.analyst"
    with pytest.raises(GovernanceError) as err:  # rsa.analyst holds nothing at RSB
        fdp_kernel.connect(purpose="elective_planning", org="RSB")
    assert err.value.rule == "identity:no-role-at-org"


def test_an_account_with_no_role_is_refused_and_audited(monkeypatch, service, federation):
    monkeypatch.setenv("FDP_SERVICE", service.location)
    monkeypatch.delenv("FDP_SERVICE_TOKEN", raising=False)
    with pytest.raises(GovernanceError) as err:
        fdp_kernel.connect(purpose="elective_planning", org="RSA")
    assert err.value.rule == "identity:unknown-user"
    last = entries(federation)[-1]
    assert (last["user"], last["rule"], last["details"]["via"]) == (
        ACCOUNT,
        "identity:unknown-user",
        "peer-credentials",
    )


@pytest.mark.parametrize("kind", ["unknown", "expired", "revoked"])
def test_unknown_expired_and_revoked_tokens_are_refused_and_audited(
    kind, monkeypatch, service, federation
):
    registry = service.server.registry
    if kind == "unknown":
        token = "not-a-token-the-service-issued"
    else:
        token, _ = registry.issue(
            Identity(OPERATOR, "person", "test"), hours=-1 if kind == "expired" else 1
        )
        if kind == "revoked":
            registry.revoke(token)
    monkeypatch.setenv("FDP_SERVICE", service.location)
    monkeypatch.setenv("FDP_SERVICE_TOKEN", token)
    with pytest.raises(GovernanceError) as err:
        fdp_kernel.connect(purpose="elective_planning", org="RSA")
    rule = "identity:token-expired" if kind == "expired" else "identity:unauthenticated"
    assert err.value.rule == rule
    assert entries(federation, "federation")[-1]["rule"] == rule


def test_one_persons_token_never_acts_in_anothers_session(connect, federation):
    theirs = connect(OPERATOR)
    mine = connect("rsa.analyst")
    mine._session = theirs._session  # the session id of someone else, with my token
    with pytest.raises(GovernanceError) as err:
        mine.table("rtt_pathways")
    assert err.value.rule == "service:session"


# -- what the client holds changes nothing -------------------------------------------------------
def test_rewriting_the_workspace_changes_nothing_the_service_allows(connect, federation):
    ws = connect("rsa.analyst")
    with pytest.raises(AttributeError):
        ws.purpose = ws.federation.purposes["direct_care"]
    with pytest.raises(AttributeError):
        ws.user = OPERATOR
    # Rewriting the private fields as well: the service keeps its own session.
    ws._purpose = ws.federation.purposes["direct_care"]
    ws._user, ws._org = OPERATOR, "RSB"
    with pytest.raises(GovernanceError) as err:
        ws.table("inpatient_spells")  # direct care would allow it; elective planning does not
    assert err.value.rule == "purpose:dataset"
    last = entries(federation)[-1]
    assert (last["user"], last["org"], last["purpose"]) == (
        "rsa.analyst",
        "RSA",
        "elective_planning",
    )


def test_the_client_holds_no_store_key_or_audit_path(connect, federation):
    from fdp_kernel.config import load_federation

    ws = connect()
    held = json.dumps({k: str(v) for k, v in vars(ws).items()}, default=str)
    real = load_federation(federation)
    for org in ws.federation.organisations.values():
        assert org.store == "held by the node service" and org.key is None and org.audit is None
        node = real.org(org.code)
        assert str(node.store) not in held and str(node.key) not in held
    assert str(federation) not in held and str(real.audit_key) not in held
    assert list(ws.federation.users) == [OPERATOR]  # no other person's roles


def test_the_mode_is_named_in_provenance_and_repr(connect):
    ws = connect()
    assert ws.provenance()["mode"] == "node service" and "node service" in repr(ws)


# -- expressions: only allow-listed operations over this session's governed tables ---------------
def _raw_release(ws, expr_payload) -> None:
    ws._channel.get(ws._body(kind="release", expr=expr_payload))


def test_a_python_udf_is_refused_and_audited(connect, federation):
    ws = connect()
    rtt = ws.table("rtt_pathways")

    @ibis.udf.scalar.python
    def leak(value: str) -> str:
        return value

    expr = rtt.group_by(x=leak(rtt.nhs_number)).agg(n=rtt.count())
    with pytest.raises(GovernanceError) as err:
        ws.release(expr)
    assert err.value.rule == "release:operation"
    assert entries(federation)[-1]["rule"] == "release:operation"


@pytest.mark.parametrize(
    "op",
    ["SQLQueryResult", "SQLStringView", "DatabaseTable", "ScalarUDF", "ReadCSV", "NoSuchOp"],
)
def test_crafted_payloads_naming_unsafe_operations_are_refused(op, connect, federation):
    ws = connect()
    payload = {"format": codec.FORMAT, "root": 0, "nodes": [{"op": op, "args": {"query": "x"}}]}
    with pytest.raises(GovernanceError) as err:
        _raw_release(ws, payload)
    assert err.value.rule == "release:operation"
    assert entries(federation)[-1]["decision"] == "deny"


def test_a_table_of_another_session_or_a_raw_name_is_refused(connect, federation):
    ws, other = connect(), connect("rsa.analyst")
    theirs = other.table("rtt_pathways")
    leaf = ibis.table(theirs.schema(), name=theirs.op().name)  # their name, sent as mine
    with pytest.raises(GovernanceError) as err:
        _raw_release(ws, codec.encode(leaf.agg(n=leaf.count())))
    assert err.value.rule == "release:not-governed"
    raw = ibis.table({"nhs_number": "string"}, name="node_RSA.patients")
    with pytest.raises(GovernanceError):
        _raw_release(ws, codec.encode(raw.agg(n=raw.count())))


def test_a_schema_that_is_not_the_governed_tables_is_refused(connect):
    ws = connect()
    rtt = ws.table("rtt_pathways")
    forged = ibis.table({"nhs_number": "string", "secret": "string"}, name=rtt.op().name)
    with pytest.raises(GovernanceError, match="not a governed table"):
        _raw_release(ws, codec.encode(forged.agg(n=forged.count())))


@pytest.mark.parametrize(
    "payload",
    [
        {"format": "pickle", "nodes": []},
        {
            "format": codec.FORMAT,
            "root": 0,
            "nodes": [{"op": "Limit", "args": {"parent": {"node": 5}}}],
        },
        {"format": codec.FORMAT, "root": 0, "nodes": "x"},
        {
            "format": codec.FORMAT,
            "root": 0,
            "nodes": [{"op": "Literal", "args": {"value": {"exec": "x"}}}],
        },
    ],
)
def test_malformed_payloads_are_usage_errors_and_the_service_stays_up(payload, connect):
    ws = connect()
    with pytest.raises(UsageError):
        _raw_release(ws, payload)
    rtt = ws.table("rtt_pathways")
    assert len(ws.release(rtt.agg(n=rtt.count()))) == 1


def test_an_oversized_in_memory_table_is_refused(connect):
    ws = connect()
    table = pa.table({"x": list(range(codec.MAX_MEMTABLE_ROWS + 1))})
    sink = io.BytesIO()
    with pa.ipc.new_stream(sink, table.schema) as writer:
        writer.write_table(table)
    arrow = {"arrow": base64.b64encode(sink.getvalue()).decode()}
    payload = {
        "format": codec.FORMAT,
        "root": 0,
        "nodes": [
            {
                "op": "InMemoryTable",
                "args": {"name": "m", "schema": {"schema": [["x", "int64"]]}, "data": arrow},
            }
        ],
    }
    with pytest.raises(UsageError, match="more than"):
        _raw_release(ws, payload)


def test_the_sessions_engine_reads_no_files(connect):
    """The service's DuckDB connection for a session has file and network access off, locked."""
    ws = connect()
    ws.table("rtt_pathways")
    session = next(
        s for r in RUNNING.values() for k, s in r.server.sessions.items() if k == ws._session
    )
    engine = session.ws._engines.engine_for("RSA")
    with engine.backend._open_gate() as con:
        raw = con.con
        assert raw.execute("SELECT current_setting('enable_external_access')").fetchone() == (
            False,
        )
        for sql in ("SELECT * FROM read_csv('/etc/passwd')", "SET enable_external_access = true"):
            with pytest.raises(Exception):  # noqa: B017 - DuckDB's permission errors
                raw.execute(sql)


def test_releases_through_the_service_equal_embedded(connect, act_as):
    ws = connect()
    rtt = ws.table("rtt_pathways")
    expr = rtt.group_by("treatment_function_code").agg(n=rtt.count())
    via_service = ws.release(expr).data.sort_values("treatment_function_code")
    act_as(OPERATOR)
    os.environ.pop("FDP_SERVICE", None)
    local = fdp_kernel.connect(purpose="elective_planning", org="RSA")
    lrtt = local.table("rtt_pathways")
    embedded = local.release(lrtt.group_by("treatment_function_code").agg(n=lrtt.count()))
    assert via_service.reset_index(drop=True).equals(
        embedded.data.sort_values("treatment_function_code").reset_index(drop=True)
    )


# -- fdp serve ----------------------------------------------------------------------------------
def test_fdp_serve_runs_until_told_to_stop(federation, tmp_path_factory):
    folder = Path("/tmp") / f"fdp-serve-{os.getpid()}"
    env = {**os.environ, "FDP_FEDERATION": str(federation_file(federation))}
    server = subprocess.Popen(
        [sys.executable, "-m", "fdp_kernel.cli", "serve", "--socket-dir", str(folder)],
        env=env,
        stderr=subprocess.PIPE,
        text=True,
    )
    try:
        deadline = time.time() + 60
        while not (folder / "ident.sock").exists():
            assert server.poll() is None and time.time() < deadline, "fdp serve did not start"
            time.sleep(0.1)
        channel = service_client.Channel(str(folder))  # the OS account's own token
        with pytest.raises(GovernanceError):  # this account has no role: refused, but served
            channel.action("connect", {"purpose": "elective_planning", "org": "RSA"})
    finally:
        server.terminate()
        _, err = server.communicate(timeout=30)
    assert server.returncode == 0 and f"FDP_SERVICE={folder}" in err


def test_the_ledger_holds_across_sessions(connect, federation):
    """A small group cannot be had by differencing a release against one from an earlier
    session: the service keeps each person's ledger per organisation and purpose."""
    first = connect(OPERATOR, "vaccination_planning", "Y90001")
    patients = first.table("patients")
    first.release(patients.group_by("sex").agg(people=patients.count()))
    sizes = first.release(patients.group_by("ethnicity").agg(people=patients.count()))
    small = sizes.data.loc[sizes.data["people"].isna(), "ethnicity"].iloc[0]
    first.close()
    later = connect(OPERATOR, "vaccination_planning", "Y90001")  # a new session
    patients = later.table("patients")
    rest = patients.filter(patients.ethnicity != small)
    second = later.release(rest.group_by("sex").agg(people=rest.count()))
    assert second.suppressed["people"].str.startswith("overlap").any(), second.suppressed


@pytest.mark.parametrize("exchange", ["released", "exact_partials"])
def test_federation_goes_service_to_service(exchange, services, federation, monkeypatch, tmp_path):
    """The ICB's service asks the trusts' service, which applies its own policy and audits;
    the figures equal those of one service hosting every node (and, where the agreement lets
    exact partials pass, the trusts' exact figures cross service to service only)."""
    import yaml

    from fdp_kernel.metrics import rtt as m
    from fdp_kernel.service.identity import TokenRegistry
    from fdp_kernel.service.run import start

    base = Path(f"/tmp/fdp-peers-{os.getpid()}-{exchange[:5]}")
    trusts_dir, icb_dir = base / "trusts", base / "icb"
    doc = yaml.safe_load((federation / "federation.yaml").read_text())
    for agreement in doc["agreements"]:
        if agreement["id"] == "DSA-ELECTIVE-ICB":
            agreement["exchange"] = exchange
    others = [o["code"] for o in doc["organisations"] if o["code"] not in ("RSA", "RSB", "RSC")]
    doc["services"] = [
        {"id": "trusts", "location": f"grpc+unix://{trusts_dir}", "nodes": ["RSA", "RSB", "RSC"]},
        {"id": "icb", "location": f"grpc+unix://{icb_dir}", "nodes": others},
    ]
    split = federation / f"split-services-{exchange}.yaml"
    split.write_text(yaml.safe_dump(doc, sort_keys=False))
    peer_token = "token-the-icb-service-presents"
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(
        yaml.safe_dump([{"sha256": TokenRegistry.digest(peer_token), "service": "icb"}])
    )
    peers = tmp_path / "peers.yaml"
    peers.write_text(yaml.safe_dump({"trusts": peer_token}))
    trusts = start(
        split, socket_dir=trusts_dir, service_id="trusts", tokens=tokens, background=True
    )
    icb = start(split, socket_dir=icb_dir, service_id="icb", peer_tokens=peers, background=True)
    try:
        token, _ = icb.server.registry.issue(Identity("icb.analyst", "person", "test"))
        monkeypatch.setenv("FDP_SERVICE", str(icb_dir))
        monkeypatch.setenv("FDP_SERVICE_TOKEN", token)
        ws = fdp_kernel.connect(purpose="elective_planning", org="QSY")

        def summary(node):
            return m.waiting_list_summary(node.table("rtt_pathways"), node.federation.as_of)

        combine = {"combine_by": ()} if exchange == "exact_partials" else {}
        got = ws.federated(summary, **combine)
        assert combine or not got.partial, got.failed
        node = entries(federation, "RSA")[-1]  # recorded by the trusts' service
        action = "partial" if combine else "release"
        assert (node["action"], node["user"]) == (action, "icb.analyst")
        assert node["details"]["via"] == "icb" and node["details"]["requester"] == "QSY"
        monkeypatch.setenv("FDP_SERVICE", services.start(split).location)
        monkeypatch.setenv("FDP_SERVICE_TOKEN", services.token(split, "icb.analyst"))
        one = fdp_kernel.connect(purpose="elective_planning", org="QSY").federated(
            summary, **combine
        )
        assert got.data.equals(one.data)
        with pytest.raises(GovernanceError) as err:  # a person's token cannot relay as a service
            service_client.Channel(str(trusts_dir), token).get(
                {
                    "kind": "node",
                    "requester": "QSY",
                    "purpose": "elective_planning",
                    "user": "icb.analyst",
                    "agreement": "DSA-ELECTIVE-ICB",
                    "expr": {},
                }
            )
        assert err.value.rule in ("identity:unauthenticated", "service:peer")
    finally:
        icb.stop()
        trusts.stop()


def test_over_tcp_the_service_speaks_tls_and_knows_its_tokens(federation, tmp_path, monkeypatch):
    """Between machines: TLS only, and a bearer token the service's token file lists."""
    import socket

    import yaml

    from fdp_kernel.service.identity import TokenRegistry
    from fdp_kernel.service.run import start

    cert, key = tmp_path / "cert.pem", tmp_path / "key.pem"
    subprocess.run(
        ["openssl", "req", "-x509", "-newkey", "rsa:2048", "-nodes", "-days", "1",
         "-keyout", str(key), "-out", str(cert), "-subj", "/CN=localhost",
         "-addext", "subjectAltName=DNS:localhost,IP:127.0.0.1"],
        check=True, capture_output=True,
    )  # fmt: skip
    token = "a-token-for-the-operator"
    tokens = tmp_path / "tokens.yaml"
    tokens.write_text(yaml.safe_dump([{"sha256": TokenRegistry.digest(token), "person": OPERATOR}]))
    with socket.socket() as probe:
        probe.bind(("127.0.0.1", 0))
        port = probe.getsockname()[1]
    with pytest.raises(UsageError, match="TLS"):
        start(federation_file(federation), listen=f"127.0.0.1:{port}")
    running = start(
        federation_file(federation), listen=f"127.0.0.1:{port}", tls_cert=cert, tls_key=key,
        tokens=tokens, background=True,
    )  # fmt: skip
    try:
        monkeypatch.setenv("FDP_SERVICE", f"grpc+tls://localhost:{port}")
        monkeypatch.setenv("FDP_SERVICE_CA", str(cert))
        monkeypatch.setenv("FDP_SERVICE_TOKEN", token)
        ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
        rtt = ws.table("rtt_pathways")
        assert ws.user == OPERATOR and len(ws.release(rtt.agg(n=rtt.count()))) == 1
        monkeypatch.setenv("FDP_SERVICE_TOKEN", "a-token-nobody-issued")
        with pytest.raises(GovernanceError):
            fdp_kernel.connect(purpose="elective_planning", org="RSA")
        monkeypatch.delenv("FDP_SERVICE_TOKEN")
        with pytest.raises(UsageError, match="TCP service"):
            fdp_kernel.connect(purpose="elective_planning", org="RSA")
    finally:
        running.stop()
