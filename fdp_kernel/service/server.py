"""``fdp serve``: the node service, an Apache Arrow Flight server that alone holds the stores,
keys and audit logs of the nodes it hosts.

Every call carries a bearer token (``identity``): from the identity socket's peer
credentials on one machine, or from the service's token file over TCP with TLS. Before
anything else the service looks it up; an unknown, revoked or expired token is refused and
the refusal is audited. A person's session is a workspace the service holds
(``fdp_kernel.workspace.Workspace`` in ``SERVICE_MODE``, engines sandboxed); the kernel holds
only the session id, the governed tables' names and schemas, and what was released.

Actions (``do_action``, JSON in and out): ``connect`` (purpose, org -> session, the public
federation), ``table`` (name, columns, source -> a name and a schema), ``catalog``,
``provenance``, ``refuse`` (a refusal made by code built on the workspace), ``close``;
``node-release`` is for peer services only (a federated request relayed service to service).
Releases are ``do_get`` with a ticket holding the encoded expression (``codec``) and return
the released table as Arrow with its suppression and caption in the schema's metadata;
a supplied DataFrame is released through ``do_exchange``.
"""

from __future__ import annotations

import datetime as dt
import json
import threading
import time
import uuid
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import ibis.expr.operations as ops
import ibis.expr.schema as sch
import ibis.expr.types as ir
import pyarrow as pa
import pyarrow.flight as flight

from fdp_kernel.config import Federation, load_federation
from fdp_kernel.errors import FdpError, GovernanceError, UsageError
from fdp_kernel.governance import policy
from fdp_kernel.governance.decision import refusal
from fdp_kernel.governance.recorder import Recorder
from fdp_kernel.service import codec, protocol
from fdp_kernel.service.identity import Identity, TokenRegistry
from fdp_kernel.service.ledger import journal_for
from fdp_kernel.workspace import SERVICE_MODE, Workspace

SESSION_HOURS = 12
LEDGER_FOLDER = "ledger"  # the differencing ledgers, beside the audit logs


@dataclass
class Session:
    id: str
    identity: Identity
    ws: Workspace
    tables: dict[str, ir.Table] = field(default_factory=dict)  # name the client uses -> table
    lock: threading.Lock = field(default_factory=threading.Lock)
    last_used: float = field(default_factory=time.time)


class IdentityMiddleware(flight.ServerMiddleware):
    def __init__(self, identity: Identity) -> None:
        self.identity = identity


class IdentityMiddlewareFactory(flight.ServerMiddlewareFactory):
    """Refuses any call without a token the service knows (and audits the refusal)."""

    def __init__(self, registry: TokenRegistry, on_refused: Callable[[GovernanceError], None]):
        self.registry, self.on_refused = registry, on_refused

    def start_call(self, info, headers):
        values = headers.get("authorization") or headers.get("Authorization") or []
        token = values[0].removeprefix("Bearer ").strip() if values else ""
        try:
            if not token:
                raise GovernanceError(
                    "no token: connect with fdp_kernel.connect(), which asks the service for "
                    "one over its identity socket",
                    rule="identity:unauthenticated",
                )
            return IdentityMiddleware(self.registry.lookup(token))
        except GovernanceError as exc:
            self.on_refused(exc)
            raise flight.FlightUnauthenticatedError(str(exc), protocol.error_info(exc)) from None


class NodeService(flight.FlightServerBase):
    """The node service for the nodes ``hosted`` (default: every node of the federation)."""

    def __init__(
        self,
        location: str,
        federation: Path,
        registry: TokenRegistry,
        *,
        hosted: Sequence[str] | None = None,
        peers: Any = None,
        tls_certificates: list[tuple[bytes, bytes]] | None = None,
    ) -> None:
        self.federation: Federation = load_federation(federation)
        self.hosted = set(hosted or self.federation.organisations)
        unknown = self.hosted - set(self.federation.organisations)
        if unknown:
            raise UsageError(f"--node {', '.join(sorted(unknown))}: not in the federation")
        self.registry = registry
        self.peers = peers
        self.sessions: dict[str, Session] = {}
        self._lock = threading.Lock()
        middleware = {"identity": IdentityMiddlewareFactory(registry, self._refused_caller)}
        kwargs: dict[str, Any] = {"middleware": middleware}
        if tls_certificates:
            kwargs["tls_certificates"] = tls_certificates
        super().__init__(location, **kwargs)

    # -- audit of callers the service could not identify ---------------------------------------
    def _refused_caller(self, exc: GovernanceError) -> None:
        Recorder(self.federation, "?", "?", None).record("connect", refusal(exc), via="service")

    # -- helpers ------------------------------------------------------------------------------
    @staticmethod
    def _identity(context) -> Identity:
        return context.get_middleware("identity").identity

    def _person(self, context) -> Identity:
        identity = self._identity(context)
        if identity.kind != "person":
            exc = GovernanceError(
                "a peer service's token cannot open a person's session",
                rule="identity:not-a-person",
            )
            self._refused_caller(exc)
            raise exc
        return identity

    def _session(self, context, body: dict) -> Session:
        identity = self._person(context)
        with self._lock:
            session = self.sessions.get(str(body.get("session")))
        if session is None or session.identity.account != identity.account:
            exc = GovernanceError(
                "no such session for this account: connect again", rule="service:session"
            )
            user = policy.user_for_account(self.federation, identity.account)
            org = session.ws.org if session is not None else "?"  # someone else's, recorded there
            Recorder(self.federation, user, org, None).refused("session", exc, via=identity.via)
            raise exc
        session.last_used = time.time()
        return session

    def _guard(self, fn: Callable[[], Any]) -> Any:
        """Run ``fn``; an fdp error goes back to the client as itself, anything else as an
        error that names nothing of the data."""
        try:
            return fn()
        except FdpError as exc:
            raise flight.FlightServerError(str(exc), protocol.error_info(exc)) from None
        except flight.FlightError:
            raise
        except Exception as exc:
            error = FdpError(f"the node service failed ({type(exc).__name__}); see its log")
            raise flight.FlightServerError(str(error), protocol.error_info(error)) from exc

    # -- actions ------------------------------------------------------------------------------
    def list_actions(self, context):
        return [
            ("connect", "open a session for a purpose at an organisation"),
            ("table", "a governed table's name and schema"),
            ("catalog", "the catalogue as the session's purpose sees it"),
            ("provenance", "how the session's figures were made"),
            ("refuse", "record a refusal made by code built on the workspace"),
            ("close", "end the session"),
            ("node-release", "peer services: a federated request at a hosted node"),
        ]

    def do_action(self, context, action):
        def run():
            body = json.loads(action.body.to_pybytes() or b"{}")
            handler = getattr(self, "_action_" + action.type.replace("-", "_"), None)
            if handler is None:
                raise UsageError(f"unknown action {action.type!r}")
            return handler(context, body)

        result = self._guard(run)
        return [flight.Result(protocol.dumps(result))]

    def _action_connect(self, context, body: dict) -> dict:
        identity = self._person(context)
        fed = self.federation
        user_id = policy.user_for_account(fed, identity.account)
        org = body.get("org")
        purpose = str(body.get("purpose"))
        try:
            user, purpose_obj, org, decision = policy.authorise(fed, user_id, purpose, org)
            if org not in self.hosted:
                raise UsageError(
                    f"{org} is not hosted by this node service; connect to the service of {org}"
                )
        except FdpError as exc:
            Recorder(fed, user_id, org or "?", purpose).refused(
                "connect", exc, account=identity.account, via=identity.via
            )
            raise
        recorder = Recorder(fed, user.id, org, purpose_obj.id, details={"via": identity.via})
        ws = Workspace(
            fed,
            user.id,
            purpose_obj,
            org,
            decision,
            recorder=recorder,
            mode=SERVICE_MODE,
            sandbox=True,
            peers=self.peers,
            journal=lambda w: journal_for(w, self.federation.root / LEDGER_FOLDER),
        )
        session = Session(uuid.uuid4().hex, identity, ws)
        with self._lock:
            self._expire_sessions()
            self.sessions[session.id] = session
        return {
            "session": session.id,
            "user": user.id,
            "org": org,
            "purpose": purpose_obj.id,
            "today": ws.today.isoformat(),
            "federation": protocol.public_federation(fed, user.id),
        }

    def _expire_sessions(self) -> None:
        old = time.time() - SESSION_HOURS * 3600
        for key in [k for k, s in self.sessions.items() if s.last_used < old]:
            self.sessions.pop(key).ws.close()

    def _action_table(self, context, body: dict) -> dict:
        session = self._session(context, body)
        columns = body.get("columns")
        with session.lock:
            table = session.ws.table(str(body["name"]), columns=columns, source=body.get("source"))
            name = f"{body['name']}@{body.get('source') or session.ws.org}#{len(session.tables)}"
            session.tables[name] = table
        schema = table.schema().to_pyarrow()
        return {"name": name, "schema": [[f.name, str(table.schema()[f.name])] for f in schema]}

    def _action_catalog(self, context, body: dict) -> dict:
        session = self._session(context, body)
        with session.lock:
            frame = session.ws.catalog(body.get("name"))
        return {"rows": frame.to_dict("records")}

    def _action_provenance(self, context, body: dict) -> dict:
        session = self._session(context, body)
        with session.lock:
            return session.ws.provenance()

    def _action_refuse(self, context, body: dict) -> dict:
        session = self._session(context, body)
        exc = GovernanceError(str(body.get("reason")), rule=str(body.get("rule")))
        session.ws.refuse(str(body.get("action")), exc)
        return {}

    def _action_close(self, context, body: dict) -> dict:
        session = self._session(context, body)
        with self._lock:
            self.sessions.pop(session.id, None)
        session.ws.close()
        return {}

    # -- releases -----------------------------------------------------------------------------
    def do_get(self, context, ticket):
        def run():
            body = json.loads(ticket.ticket)
            if body.get("kind") == "node":
                return self._node_release(context, body)
            session = self._session(context, body)
            with session.lock:
                if body.get("kind") == "federated":
                    return self._federated(session, body)
                try:
                    expr = codec.decode(body.get("expr"), self._binder(session))
                except FdpError as exc:  # refused before it could run: recorded all the same
                    raise session.ws.refuse("release", exc) from None
                released = session.ws.release(expr, title=body.get("title"), **_spec(body))
            return protocol.released_to_arrow(released)

        table = self._guard(run)
        return flight.RecordBatchStream(table)

    def do_exchange(self, context, descriptor, reader, writer):
        def run():
            body = json.loads(descriptor.command)
            session = self._session(context, body)
            frame = reader.read_all().to_pandas()
            with session.lock:
                released = session.ws.release(frame, title=body.get("title"), **_spec(body))
            return protocol.released_to_arrow(released)

        table = self._guard(run)
        writer.begin(table.schema)
        writer.write_table(table)
        writer.close()

    def _binder(self, session: Session) -> codec.Binder:
        def bind(name: str, schema: sch.Schema) -> ops.Relation:
            table = session.tables.get(name)
            if table is None or (schema is not None and table.schema() != schema):
                raise GovernanceError(
                    f"the expression reads {name!r}, which is not a governed table of this "
                    "session; build it from ws.table(...)",
                    rule="release:not-governed",
                )
            return table.op()

        return bind

    def _federated(self, session: Session, body: dict) -> pa.Table:
        """A federated request: the encoded query is bound at each node to that node's
        governed tables (``@dataset`` names) by the workspace's own federation."""
        encoded = body.get("expr")
        try:
            codec.decode(
                encoded, lambda name, schema: ops.UnboundTable(name, schema or sch.Schema({}))
            )
        except FdpError as exc:
            raise session.ws.refuse("federated", exc) from None

        def query(node):
            def bind(name: str, schema: sch.Schema) -> ops.Relation:
                return _node_table(node, name, schema).op()

            return codec.decode(encoded, bind)

        combine_by = body.get("combine_by")
        result = session.ws.federated(
            query, body.get("orgs"), title=body.get("title"), combine_by=combine_by, **_spec(body)
        )
        if combine_by is not None:
            return protocol.released_to_arrow(result)
        return federated_to_arrow(result)

    def _node_release(self, context, body: dict) -> pa.Table:
        """A peer service relays a person's federated request to a node hosted here: this
        service checks that the peer hosts the requesting organisation, finds the agreement
        in force itself, and runs the query under it on its own governed tables."""
        identity = self._identity(context)
        fed = self.federation
        requester, org = str(body.get("requester")), None
        peer = fed.services.get(identity.account) if identity.kind == "service" else None
        recorder = Recorder(fed, str(body.get("user")), "?", body.get("purpose"))
        try:
            if peer is None or requester not in peer.nodes:
                raise GovernanceError(
                    f"{identity.account} may not ask for {requester}: only the node service "
                    "that hosts an organisation relays its federated requests",
                    rule="service:peer",
                )
            purpose = fed.purposes.get(str(body.get("purpose")))
            org = str(body.get("org"))
            if purpose is None or org not in self.hosted:
                raise GovernanceError(
                    f"{org} is not a node this service hosts, or the purpose is unknown",
                    rule="service:peer",
                )
            agreement = policy.agreement_for(fed, purpose.id, org, requester, dt.date.today())
        except FdpError as exc:
            recorder.refused("federated", exc, via=identity.account, requester=requester)
            raise
        node = self._provider_workspace(identity, body, requester, org, purpose, agreement)
        try:
            expr = codec.decode(body.get("expr"), lambda n, s: _node_table(node, n, s).op())
        except FdpError as exc:
            raise node.refuse("release", exc) from None
        if body.get("partial"):  # to the requester's service only: never shown to a person
            part = node.partial(expr, title=body.get("title"))
            return protocol.table_to_arrow(
                part.frame, part.frame.iloc[:, :0], dimensions=list(part.dimensions),
                counts=list(part.counts), sums={k: dict(v) for k, v in part.sums.items()},
                sources=list(part.sources),
            )  # fmt: skip
        released = node.release(expr, title=body.get("title"), **_spec(body))
        return protocol.released_to_arrow(released)

    def _provider_workspace(self, identity, body, requester, org, purpose, agreement):
        """The node workspace at ``org`` for a request relayed by a peer service: as if the
        requester's workspace had opened it here (the same restrictions and audit)."""
        from types import SimpleNamespace

        from fdp_kernel.workspace import NodeWorkspace

        asking = SimpleNamespace(
            org=requester,
            federation=self.federation,
            user=str(body.get("user")),
            purpose=purpose,
            today=dt.date.today(),
            mode=SERVICE_MODE,
            _sandbox=True,
            _journal=lambda w: journal_for(w, self.federation.root / LEDGER_FOLDER),
        )
        return NodeWorkspace(asking, org, agreement, via=identity.account)


def _node_table(node, name: str, schema: sch.Schema | None):
    """The node's governed table for a federated query's leaf ``@dataset`` (only the columns
    the query was built with, when they are fewer than the dataset's)."""
    dataset = name.removeprefix("@")
    columns = list(schema.names) if schema is not None else None
    from fdp_kernel.catalog import dataset as lookup

    if columns is not None and set(columns) == set(lookup(dataset).column_names):
        columns = None
    return node.table(dataset, columns=columns)


def federated_to_arrow(result) -> pa.Table:
    """A federated result: the node-released figures with each node's outcome (the released
    tables of the nodes that answered are already in ``data``)."""
    outcomes = {
        org: {
            "status": o.status,
            "reason": o.reason,
            "agreement": o.agreement,
            "seconds": o.seconds,
        }
        for org, o in result.outcomes.items()
    }
    return protocol.table_to_arrow(
        result.data, result.suppressed, title=result.title, outcomes=outcomes
    )


def _spec(body: dict) -> dict[str, Any]:
    """The release spec a client may state (the pipeline checks it against the expression)."""
    from fdp_kernel.governance.disclosure import Magnitude

    spec: dict[str, Any] = {}
    for key in ("dimensions", "counts"):
        if body.get(key):
            spec[key] = list(body[key])
    if body.get("statistics"):
        spec["statistics"] = dict(body["statistics"])
    if body.get("percentages"):
        spec["percentages"] = {k: tuple(v) for k, v in body["percentages"].items()}
    if body.get("magnitudes"):
        spec["magnitudes"] = {k: Magnitude(*v) for k, v in body["magnitudes"].items()}
    return spec


_ = dt  # dates cross as ISO text (protocol.dumps)
