"""The thin client: ``fdp_kernel.connect()`` when a node service is configured.

A ``ServiceWorkspace`` holds no store path, no key and no audit handle: only a Flight
connection, a bearer token the service gave this process (or the person's hub token), its
session id, and the public federation the service described. Governed tables are Ibis tables
over the schemas the service returns (``ibis.table(schema, name=...)``: they have no engine and
cannot run); ``release`` sends the expression's operation graph (``codec``) and gets back only
what the service released. Nothing this object holds changes what the service allows: every
decision is the service's, from its own federation file and its own view of who is asking.

Where the service is: ``FDP_SERVICE`` (a Unix socket folder or ``grpc+unix://...`` on this
machine, ``grpc+tls://host:port`` between machines). That is a location, not an identity.
"""

from __future__ import annotations

import datetime as dt
import json
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa
import pyarrow.flight as flight

from fdp_kernel.catalog import dataset
from fdp_kernel.errors import GovernanceError, UsageError
from fdp_kernel.federation import FederatedResult, NodeOutcome, Query
from fdp_kernel.governance.disclosure import Magnitude
from fdp_kernel.governance.released import Released
from fdp_kernel.service import codec, protocol
from fdp_kernel.service.identity import fetch_peer_token

SERVICE_ENV = "FDP_SERVICE"  # where the node service is
TOKEN_ENV = "FDP_SERVICE_TOKEN"  # a bearer token for TCP (the hub deployment sets its own)
CA_ENV = "FDP_SERVICE_CA"  # the certificate authority a TLS service's certificate is from
FLIGHT_SOCKET, IDENT_SOCKET = "node.sock", "ident.sock"
MODE = "node service"


def locate(text: str) -> tuple[str, Path | None]:
    """(Flight location, identity socket or None) of ``FDP_SERVICE``."""
    if text.startswith(("grpc+tls://", "grpc+tcp://", "grpc://")):
        return text, None
    folder = Path(text.removeprefix("grpc+unix://"))
    if folder.name == FLIGHT_SOCKET:
        folder = folder.parent
    return f"grpc+unix://{folder / FLIGHT_SOCKET}", folder / IDENT_SOCKET


def tls_options(environ: Mapping[str, str]) -> dict[str, Any]:
    """The root certificates a TLS service is checked against (``FDP_SERVICE_CA``; else the
    system's)."""
    path = environ.get(CA_ENV)
    if not path:
        return {}
    try:
        return {"tls_root_certs": Path(path).read_bytes()}
    except OSError as exc:
        raise UsageError(f"{CA_ENV}={path}: cannot read it ({exc.strerror})") from None


class Channel:
    """One Flight connection to a node service, authenticated by a bearer token."""

    def __init__(self, where: str, token: str | None = None, **options: Any) -> None:
        location, ident = locate(where)
        if token is None:
            if ident is None:
                raise UsageError(
                    f"{SERVICE_ENV}={where} is a TCP service: set {TOKEN_ENV} to a token that "
                    "service knows (docs/deploy.md)"
                )
            token = fetch_peer_token(ident)
        self._token = token
        self.client = flight.FlightClient(location, **options)
        self._options = flight.FlightCallOptions(
            headers=[(b"authorization", f"Bearer {token}".encode())]
        )

    def action(self, kind: str, body: Mapping[str, Any]) -> Any:
        try:
            results = list(
                self.client.do_action(flight.Action(kind, protocol.dumps(body)), self._options)
            )
        except flight.FlightError as exc:
            protocol.raise_error(getattr(exc, "extra_info", None), exc)
        return json.loads(results[0].body.to_pybytes()) if results else None

    def get(self, body: Mapping[str, Any]) -> pa.Table:
        try:
            reader = self.client.do_get(flight.Ticket(protocol.dumps(body)), self._options)
            return reader.read_all()
        except flight.FlightError as exc:
            protocol.raise_error(getattr(exc, "extra_info", None), exc)

    def exchange(self, body: Mapping[str, Any], table: pa.Table) -> pa.Table:
        descriptor = flight.FlightDescriptor.for_command(protocol.dumps(body))
        try:
            writer, reader = self.client.do_exchange(descriptor, self._options)
            with writer:
                writer.begin(table.schema)
                writer.write_table(table)
                writer.done_writing()
                return reader.read_all()
        except flight.FlightError as exc:
            protocol.raise_error(getattr(exc, "extra_info", None), exc)

    def close(self) -> None:
        self.client.close()


def connect(
    purpose: str,
    org: str | None = None,
    *,
    service: str | None = None,
    environ: Mapping[str, str] | None = None,
) -> ServiceWorkspace:
    """A workspace at the node service for ``purpose`` at ``org``: the service decides who
    you are from the connection."""
    environ = os.environ if environ is None else environ
    where = service or environ.get(SERVICE_ENV)
    if not where:
        raise UsageError(f"no node service: set {SERVICE_ENV} (docs/deploy.md)")
    channel = Channel(where, environ.get(TOKEN_ENV) or None, **tls_options(environ))
    answer = channel.action("connect", {"purpose": purpose, "org": org})
    return ServiceWorkspace(channel, answer)


class ServiceWorkspace:
    """A session at the node service; the same API as the embedded ``Workspace``."""

    def __init__(self, channel: Channel, answer: Mapping[str, Any]) -> None:
        from fdp_kernel.engines.duckdb import GatedDuckDB

        self._channel = channel
        self._session = answer["session"]
        self._fed = protocol.federation_from(answer["federation"])
        self._user, self._org = answer["user"], answer["org"]
        self._purpose = self._fed.purposes[answer["purpose"]]
        self._today = dt.date.fromisoformat(answer["today"])
        # Governed tables here are empty placeholders of the service's tables in a gated,
        # data-less engine: they build expressions; running one is refused (and recorded).
        self._local = GatedDuckDB().connect()
        self._local._arm(self._refused_access)

    def _refused_access(self, what: str) -> None:
        reason = f"direct access {what} to a governed table refused"
        self._channel.action(
            "refuse", self._body(action="engine", rule="engine:direct-access", reason=reason)
        )

    def _leaf(self, node) -> str | None:
        return node.name if getattr(node, "source", None) is self._local else None

    federation = property(lambda self: self._fed)
    user = property(lambda self: self._user)
    purpose = property(lambda self: self._purpose)
    org = property(lambda self: self._org)
    today = property(lambda self: self._today)
    mode = property(lambda self: MODE)

    def _body(self, **body: Any) -> dict[str, Any]:
        return {"session": self._session, **body}

    # -- what the purpose allows ------------------------------------------------------------
    def datasets(self) -> list[str]:
        node = self._fed.org(self._org)
        return [d for d in self._purpose.datasets if node.org_type in dataset(d).held_by]

    def columns(self, name: str) -> list[str]:
        return list(self._purpose.datasets.get(name, ()))

    def catalog(self, name: str | None = None) -> pd.DataFrame:
        from fdp_kernel.workbench.catalogue import catalogue_frame

        rows = self._channel.action("catalog", self._body(name=name))["rows"]
        return catalogue_frame(rows, self._purpose.id, self._org)

    # -- governed tables ------------------------------------------------------------------
    def table(
        self, name: str, *, columns: Sequence[str] | None = None, source: str | None = None
    ) -> ir.Table:
        """A governed table at the service: an Ibis table of its schema, to build on."""
        cols = list(columns) if columns is not None else None
        answer = self._channel.action("table", self._body(name=name, columns=cols, source=source))
        schema = ibis.schema([(n, t) for n, t in answer["schema"]])
        with self._local._open_gate() as con:
            con.create_table(answer["name"], schema=schema, temp=True)
            return con.table(answer["name"])

    # -- release --------------------------------------------------------------------------
    def release(
        self,
        obj: ir.Table | pd.DataFrame,
        *,
        title: str | None = None,
        dimensions: Sequence[str] = (),
        counts: Sequence[str] = (),
        statistics: Mapping[str, str] | None = None,
        magnitudes: Mapping[str, Magnitude] | None = None,
        percentages: Mapping[str, tuple[str, str]] | None = None,
    ) -> Released:
        """Send ``obj`` to the service, which checks it from scratch, runs it, applies
        disclosure control and audits; returns what it released."""
        spec = spec_body(dimensions, counts, statistics, magnitudes, percentages)
        if isinstance(obj, Released):
            raise UsageError("this is already released; use its .data")
        if isinstance(obj, pd.DataFrame):
            body = self._body(title=title, **spec)
            table = self._channel.exchange(body, protocol.frame_to_arrow(obj))
            return protocol.released_from_arrow(table)
        if not isinstance(obj, ir.Table):
            raise UsageError(
                f"release takes an Ibis table expression or a pandas DataFrame, "
                f"got {type(obj).__name__}"
            )
        try:
            expr = codec.encode(obj, self._leaf)
        except GovernanceError as exc:  # refused here: the service records it all the same
            raise self.refuse("release", exc) from None
        body = self._body(kind="release", expr=expr, title=title, **spec)
        return protocol.released_from_arrow(self._channel.get(body))

    def federated(
        self,
        query: Query,
        orgs: Sequence[str] | None = None,
        *,
        title: str | None = None,
        combine_by: Sequence[str] | None = None,
        **spec,
    ) -> FederatedResult | Released:
        """Run ``query`` at each node an agreement permits, each node's own service applying
        its policy and disclosure control; the combined, node-released figures."""
        expr = query(_NodeStub(self)) if callable(query) else query
        body = self._body(
            kind="federated",
            expr=codec.encode(expr),
            orgs=list(orgs) if orgs is not None else None,
            title=title,
            combine_by=list(combine_by) if combine_by is not None else None,
            **spec_body(**spec),
        )
        if combine_by is not None:
            return protocol.released_from_arrow(self._channel.get(body))
        data, suppressed, meta = protocol.table_from_arrow(self._channel.get(body))
        outcomes = {
            org: NodeOutcome(org, o["status"], o["reason"], o["agreement"], o["seconds"])
            for org, o in meta["outcomes"].items()
        }
        return FederatedResult(data, suppressed, outcomes, meta.get("title"))

    def refuse(self, action: str, exc: GovernanceError) -> GovernanceError:
        """Have the service record a refusal made by code built on the workspace."""
        self._channel.action("refuse", self._body(action=action, rule=exc.rule, reason=str(exc)))
        return exc

    # -- provenance -----------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        return self._channel.action("provenance", self._body())

    def close(self) -> None:
        try:
            self._channel.action("close", self._body())
        finally:
            self._channel.close()
            with self._local._open_gate() as con:
                con.disconnect()

    def __enter__(self) -> ServiceWorkspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self._user} at {self._org} for {self._purpose.id} ({MODE})>"


class _NodeStub:
    """What a federated query function sees while it is built: tables named ``@dataset`` of
    the requester's purpose's columns, bound at each node by that node's service."""

    def __init__(self, ws: ServiceWorkspace) -> None:
        self.federation, self.purpose, self.org = ws.federation, ws.purpose, ws.org
        self.today, self.user = ws.today, ws.user

    def table(self, name: str, *, columns: Sequence[str] | None = None, source=None) -> ir.Table:
        ds = dataset(name)
        allowed = self.purpose.datasets.get(name, ds.column_names)
        wanted = [c for c in ds.column_names if c in (columns or allowed)]
        schema = ds.schema()
        return ibis.table(ibis.schema({c: schema[c] for c in wanted}), name=f"@{name}")


def spec_body(
    dimensions=(), counts=(), statistics=None, magnitudes=None, percentages=None
) -> dict[str, Any]:
    out: dict[str, Any] = {}
    if dimensions:
        out["dimensions"] = list(dimensions)
    if counts:
        out["counts"] = list(counts)
    if statistics:
        out["statistics"] = dict(statistics)
    if magnitudes:
        out["magnitudes"] = {k: [m.contributors, m.top1, m.top2] for k, m in magnitudes.items()}
    if percentages:
        out["percentages"] = {k: list(v) for k, v in percentages.items()}
    return out
