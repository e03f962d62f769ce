"""The notebook-facing API: ``connect`` a purpose at an organisation, read governed tables,
``release`` results.

    import fdp_kernel as fdp
    ws = fdp.connect(purpose="elective_planning", org="RSA")
    rtt = ws.table("rtt_pathways")
    released = ws.release(rtt.group_by("treatment_function_code").agg(pathways=rtt.count()))

Identity is never an argument: it is the authenticated user (JupyterHub's ``JUPYTERHUB_USER``,
else the operating-system account), mapped to roles by the federation file. Every decision is
audited in the node's hash-chained log before anything is returned; if the audit cannot be
written, nothing is returned.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import os
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.operations as ops
import ibis.expr.types as ir
import pandas as pd
import pyarrow as pa

from fdp_kernel import __version__
from fdp_kernel.catalog import ColumnClass, dataset
from fdp_kernel.config import FEDERATION_FILE, Federation, load_federation
from fdp_kernel.errors import ConfigError, FdpError, GovernanceError, StoreError, UsageError
from fdp_kernel.governance import keys as keymod
from fdp_kernel.governance.audit import AuditEvent, AuditLog
from fdp_kernel.governance.disclosure import (
    DisclosureRules,
    Magnitude,
    apply_disclosure_control,
    infer_spec,
)
from fdp_kernel.governance.gate import GatedDuckDB
from fdp_kernel.governance.lineage import UNKNOWN, Lineage
from fdp_kernel.governance.model import Level, Purpose
from fdp_kernel.governance.overlap import Ledger, carried, top_aggregate
from fdp_kernel.governance.policy import ViewPlan, authorise, identify, plan_table
from fdp_kernel.governance.released import Released, rules_note
from fdp_kernel.governance.views import duckdb_view_sql, spark_view_sql
from fdp_kernel.stores import quote, sql_type

FEDERATION_ENV = "FDP_FEDERATION"
DEMO_FEDERATION = Path("data") / "demo" / FEDERATION_FILE
# Quasi-identifiers too fine to release as a table dimension without coarsening them first.
FINE_QUASI_IDENTIFIERS = frozenset({"date_of_birth", "date_of_death", "lsoa_code"})


def find_federation(environ: Mapping[str, str]) -> Path:
    """``$FDP_FEDERATION``, else ``data/demo/federation.yaml`` here or in a parent folder."""
    if environ.get(FEDERATION_ENV):
        return Path(environ[FEDERATION_ENV])
    here = Path.cwd().resolve()
    for folder in (here, *here.parents):
        if (folder / DEMO_FEDERATION).exists():
            return folder / DEMO_FEDERATION
    raise ConfigError(
        f"no federation file: set {FEDERATION_ENV} to your federation.yaml, or run `make demo` "
        "(or `fdp synth`) to build the demo federation in data/demo"
    )


def _audit(fed: Federation, org: str | None, *events: AuditEvent) -> None:
    code = org if org in fed.organisations else None
    path = fed.audit_path(code) if code else fed.root / "audit" / "federation.jsonl"
    AuditLog(path).append_many(list(events))


def connect(purpose: str, org: str | None = None) -> Workspace:
    """A workspace for the person running this, acting for ``purpose`` at ``org``.

    ``org`` may be left out when the user acts for one organisation only. A purpose or org the
    user does not hold is refused with an error listing what they do hold.
    """
    environ = os.environ
    fed = load_federation(find_federation(environ))
    user_id = identify(environ)
    try:
        user, purpose_obj, org = authorise(fed, user_id, purpose, org)
    except GovernanceError as exc:
        event = AuditEvent("connect", "deny", user_id, org or "?", purpose, reason=str(exc))
        _audit(fed, org, event)
        raise
    return Workspace(fed, user.id, purpose_obj, org)


class Workspace:
    """A user acting for one purpose at one organisation. Use ``connect`` to make one."""

    def __init__(
        self, fed: Federation, user: str, purpose: Purpose, org: str, *, reason: str = ""
    ) -> None:
        self.federation = fed
        self.user = user
        self.purpose = purpose
        self.org = org
        self.today = dt.date.today()
        self._backend = GatedDuckDB().connect()
        # No progress bar: a query over 2 s would print one into notebooks and reports.
        self._backend.con.execute("SET enable_progress_bar = false")
        self._backend._arm()
        self._attached: set[str] = set()
        self._views: dict[str, ViewPlan] = {}  # view name -> plan
        self._ledger = Ledger(purpose.disclosure.min_count)
        self._remote: dict[str, Any] = {}  # provider -> gated PostgreSQL or Spark backend
        self._spark_con: Any = None  # the workspace's Spark session, when a node is on Spark
        self._remote_views: dict[str, ViewPlan] = {}
        self._nodes: dict[tuple[str, str], NodeWorkspace] = {}
        self._log(
            AuditEvent(
                "connect",
                "allow",
                user,
                org,
                purpose.id,
                reason=reason or f"{user} holds {purpose.id} at {org}",
            )
        )

    # -- audit ----------------------------------------------------------------------------
    def _log(self, event: AuditEvent, to_provider: str | None = None) -> None:
        _audit(self.federation, self.org, event)
        if to_provider and to_provider != self.org:
            _audit(self.federation, to_provider, event)

    def _event(self, action: str, decision: str, reason: str = "", agreement=None, **details):
        return AuditEvent(
            action,
            decision,
            self.user,
            self.org,
            self.purpose.id,
            agreement_id=agreement,
            reason=reason,
            details=details,
        )

    def _deny(self, action: str, exc: FdpError, to_provider: str | None = None, **details):
        self._log(self._event("deny", "deny", str(exc), request=action, **details), to_provider)
        raise exc

    # -- what the purpose allows ------------------------------------------------------------
    def datasets(self) -> list[str]:
        """Datasets this purpose allows that this organisation's node holds."""
        node = self.federation.org(self.org)
        return [d for d in self.purpose.datasets if node.org_type in dataset(d).held_by]

    def catalog(self, name: str | None = None) -> pd.DataFrame:
        """The catalogue as this workspace sees it: every column of the datasets this node
        holds, its description and class, and whether this purpose shows it (as is, as a
        pseudonym) or not (and which purposes would). In a notebook it shows as one table
        per dataset (``fdp_kernel.widgets_catalog``)."""
        from fdp_kernel.catalog import DATASETS
        from fdp_kernel.governance.policy import is_public_reference
        from fdp_kernel.widgets_catalog import catalogue_frame

        node = self.federation.org(self.org)
        rows = []
        for ds in DATASETS:
            if (name and ds.name != name) or node.org_type not in ds.held_by:
                continue
            for col in ds.columns:
                allowed = is_public_reference(ds) or self.purpose.allows(ds.name, col.name)
                direct = col.classification is ColumnClass.DIRECT_IDENTIFIER
                if not allowed:
                    others = [
                        p.id
                        for p in self.federation.purposes.values()
                        if p.allows(ds.name, col.name)
                    ]
                    shown = "not shown" + (f" (allowed by {', '.join(others)})" if others else "")
                elif direct and self.purpose.level is not Level.IDENTIFIABLE:
                    shown = "pseudonym"
                else:
                    shown = "as is"
                rows.append(
                    {
                        "dataset": ds.name,
                        "column": col.name,
                        "type": col.dtype,
                        "class": col.classification.value,
                        "this purpose": shown,
                        "description": col.description,
                    }
                )
        if name and not rows:
            dataset(name)  # unknown names get the catalogue's error listing what exists
            raise GovernanceError(f"{self.org} ({node.org_type}) does not hold {name}")
        return catalogue_frame(rows, self.purpose.id, self.org)

    def columns(self, name: str) -> list[str]:
        """Columns of ``name`` this purpose allows (identifiers shown as pseudonyms)."""
        return list(self.purpose.datasets.get(name, ()))

    # -- governed tables ------------------------------------------------------------------
    def table(
        self, name: str, *, columns: Sequence[str] | None = None, source: str | None = None
    ) -> ir.Table:
        """The governed table of dataset ``name``: allowed columns, own rows (or rows shared
        by ``source`` under a row-level agreement), identifiers pseudonymised, opt-outs
        removed for planning. Build expressions on it; pass results to ``release``."""
        provider = source or self.org
        details = {"dataset": name, "provider": provider, "columns": list(columns or [])}
        try:
            plan = plan_table(
                self.federation,
                self.purpose,
                self.org,
                name,
                columns=columns,
                provider=provider,
                today=self.today,
            )
            table = self._materialise(plan, columns)
        except FdpError as exc:
            self._deny("table", exc, provider, **details)
        self._log(
            self._event(
                "table",
                "allow",
                f"{plan.purpose} allows {name}",
                plan.agreement,
                **details,
                level=plan.level.value,
            ),
            provider,
        )
        return table

    def _materialise(self, plan: ViewPlan, columns) -> ir.Table:
        engine = self.federation.org(plan.provider).engine
        if engine == "postgres":
            return self._postgres_table(plan)
        view = plan.dataset if plan.provider == self.org else f"{plan.dataset}__{plan.provider}"
        if columns is not None:
            view += "__" + hashlib.sha256(",".join(columns).encode()).hexdigest()[:8]
        # Rows shared by another node go to this workspace's home engine (its own node's),
        # so that they can be joined with its own rows and with other nodes' shared rows.
        home = self.federation.org(self.org).engine
        if engine == "spark" and (plan.provider == self.org or home == "spark"):
            return self._spark_table(plan, view)
        if engine == "spark":
            return self._handover_to_duckdb(plan, view)
        if home == "spark" and plan.provider != self.org:
            return self._handover_to_spark(plan, view)
        self._duckdb_view(plan, view)
        with self._backend._open_gate() as con:
            return con.table(view)

    def _duckdb_view(self, plan: ViewPlan, view: str) -> None:
        if view not in self._views:
            source = self._attach(plan.provider)
            key = self._key(plan) if plan.key_label else None
            with self._backend._open_gate() as con:
                con.raw_sql(duckdb_view_sql(plan, view, source, key))
            self._views[view] = plan

    def _postgres_table(self, plan: ViewPlan) -> ir.Table:
        """A node stored in PostgreSQL: its server enforces the purpose's view (own rows,
        opt-outs, pseudonyms with the node's key) for this user's login role."""
        if plan.agreement is not None:
            raise GovernanceError(
                f"{plan.provider} is stored in PostgreSQL, where row-level agreements are not "
                "compiled; ask for aggregates with ws.federated(...)"
            )
        con = self._postgres(plan.provider)
        from fdp_kernel.governance.postgres import purpose_schema

        with con._open_gate():
            table = con.table(plan.dataset, database=purpose_schema(plan.purpose))
        self._remote_views[plan.dataset] = plan
        wanted = [c.name for c in plan.columns]
        if list(table.columns) != wanted:  # the agreement may cover fewer columns
            table = table.select(*wanted)
        return table

    def _spark(self):
        """This workspace's one Spark session (every Spark node of a process shares a master),
        so that several nodes' Spark views can meet in one expression."""
        from fdp_kernel.governance import spark

        if self._spark_con is None:
            stores = [o.store for o in self.federation.organisations.values()]
            self._spark_con = spark.gated_spark(next(s for s in stores if spark.is_spark(s)))
        return self._spark_con

    def _spark_table(self, plan: ViewPlan, view: str) -> ir.Table:
        """A node stored as Parquet on Spark: the same governed view as on DuckDB, built in
        this workspace's own Spark session over the node's raw tables."""
        from fdp_kernel.governance import spark

        org = self.federation.org(plan.provider)
        con = self._remote[plan.provider] = self._spark()
        spark.check_master(str(org.store), con)
        if view not in self._remote_views:
            needed = {plan.dataset} | ({"patients"} if plan.opt_out else set())
            for name in sorted(needed):
                spark.register_raw(con, plan.provider, org.data, name)
            key = self._key(plan) if plan.key_label else None
            raw = lambda name: spark.raw_view(plan.provider, name)  # noqa: E731
            with con._open_gate():
                con._session.sql(spark_view_sql(plan, view, raw, key))
            self._remote_views[view] = plan
        with con._open_gate():
            return con.table(view)

    def _handover_to_duckdb(self, plan: ViewPlan, view: str) -> ir.Table:
        """Rows a Spark node shares under a row-level agreement, computed by its governed view
        (agreed columns, the agreement's pseudonyms) and handed over into this workspace's
        own DuckDB, where they can be joined with its own and other nodes' rows."""
        if view not in self._views:
            shared = self._spark_table(plan, view)
            with self._spark()._open_gate():
                rows = shared.to_pyarrow()
            del self._remote_views[view]
            ds = dataset(plan.dataset)
            schema = ds.schema().to_pyarrow()
            rows = rows.cast(pa.schema([schema.field(name) for name in rows.column_names]))
            # The same column types and NOT NULLs as the node's view would have on DuckDB.
            columns = ", ".join(
                f"{quote(c.name)} {sql_type(ds.column(c.name).dtype)}"
                + ("" if ds.column(c.name).nullable or c.pseudonymise else " NOT NULL")
                for c in plan.columns
            )
            with self._backend._open_gate() as duck:
                duck.con.register("_fdp_handover", rows)
                duck.con.execute(f"CREATE OR REPLACE TEMP TABLE {quote(view)} ({columns})")
                duck.con.execute(f"INSERT INTO {quote(view)} SELECT * FROM _fdp_handover")
                duck.con.unregister("_fdp_handover")
            self._views[view] = plan
        with self._backend._open_gate() as con:
            return con.table(view)

    def _handover_to_spark(self, plan: ViewPlan, view: str) -> ir.Table:
        """Rows a DuckDB node shares with this Spark node, from its governed DuckDB view into
        this workspace's Spark session."""
        con = self._spark()
        if view not in self._remote_views:
            self._duckdb_view(plan, view)
            with self._backend._open_gate() as duck:
                rows = duck.con.sql(f"SELECT * FROM {quote(view)}").to_arrow_table()
            del self._views[view]
            with con._open_gate():
                con._session.createDataFrame(rows).createOrReplaceTempView(view)
            self._remote_views[view] = plan
        with con._open_gate():
            return con.table(view)

    def _other_engines(self) -> list:
        """The gated PostgreSQL backends and the Spark session this workspace opened."""
        engines = [c for c in self._remote.values() if c is not self._spark_con]
        return engines + ([self._spark_con] if self._spark_con is not None else [])

    def _postgres(self, code: str):
        if code not in self._remote:
            from urllib.parse import urlparse

            from fdp_kernel.governance.gate import gated_postgres

            url = urlparse(self.federation.org(code).store)
            try:
                con = gated_postgres().connect(
                    host=url.hostname,
                    port=url.port or 5432,
                    user=self.user,
                    database=url.path.lstrip("/"),
                )
            except Exception as exc:
                raise StoreError(
                    f"cannot connect to {code}'s PostgreSQL store as {self.user} "
                    f"({type(exc).__name__}: {str(exc).strip()[:200]}); the node's "
                    "administrator must apply the policy (fdp_kernel.governance.postgres)"
                ) from None
            con._arm()
            self._remote[code] = con
        return self._remote[code]

    def _attach(self, code: str) -> str:
        alias = quote(f"node_{code}")
        if code not in self._attached:
            store = self.federation.org(code).store
            if not store.exists():
                raise StoreError(f"the store of {code} is missing ({store}); nothing is shown")
            with self._backend._open_gate() as con:
                con.raw_sql(f"ATTACH '{store}' AS {alias} (READ_ONLY)")
            self._attached.add(code)
        return alias

    def _key(self, plan: ViewPlan) -> keymod.PseudonymKey:
        kind, _, ident = plan.key_label.partition(":")
        if kind == "agreement":
            agreement = self.federation.agreements[ident]
            path = Path(agreement.key) if agreement.key else None
            raw = keymod.read_key(path, owner=f"agreement {ident}")
        else:
            raw = keymod.read_key(self.federation.org(plan.provider).key, owner=plan.provider)
        return keymod.derive(raw, plan.key_label)

    # -- release: the only path to a person ---------------------------------------------------
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
        """Run ``obj`` (or take a DataFrame), apply disclosure control, audit, and return the
        released figures. Integer columns are counts; other numbers must be declared as
        statistics (with the count they are based on) or magnitudes. Refuses what it cannot
        check."""
        spec_args = {
            "dimensions": dimensions,
            "counts": counts,
            "statistics": statistics,
            "magnitudes": magnitudes,
            "percentages": percentages,
        }
        plans = self._plans_of(obj)
        agreement = ",".join(sorted({p.agreement for p in plans if p.agreement})) or None
        providers = sorted({p.provider for p in plans} - {self.org})
        done: list[AuditEvent] = []  # the query event, once the query has run
        try:
            frame, sources, sql_hash, listing = self._run(obj, spec_args)
            if sql_hash:
                done.append(
                    self._event(
                        "query",
                        "allow",
                        "governed expression run",
                        agreement,
                        sql_sha256=sql_hash,
                        row_count=len(frame),
                    )
                )
            forced = None if listing else self._overlap(obj, frame)
            released = self._control(frame, sources, title, spec_args, listing, forced)
        except FdpError as exc:
            deny = self._event("deny", "deny", str(exc), agreement, request="release", title=title)
            self._log_each([*done, deny], providers)
            raise
        reason = "direct care listing" if released.listing else "disclosure control applied"
        event = self._event(
            "release",
            "allow",
            reason,
            agreement,
            title=title,
            rows=len(released),
            columns=list(released.data.columns),
            suppressed=released.n_suppressed,
            sql_sha256=sql_hash,
        )
        self._log_each([*done, event], providers)
        return released

    def _plans_of(self, obj) -> list[ViewPlan]:
        if not isinstance(obj, ir.Table):
            return []
        plans = {**self._views, **self._remote_views}
        return [plans[n] for n in _leaf_names(obj) if n in plans]

    def _log_each(self, events: list[AuditEvent], providers: Sequence[str]) -> None:
        for org in (self.org, *providers):
            _audit(self.federation, org, *events)

    def _run(self, obj, spec_args) -> tuple:
        """(rows, source datasets, SQL hash, whether it is a record-level listing)."""
        if isinstance(obj, Released):
            raise UsageError("this is already released; use its .data")
        if isinstance(obj, pd.DataFrame):
            return obj, ["supplied table"], None, False
        if not isinstance(obj, ir.Table):
            raise UsageError(
                f"release takes an Ibis table expression or a pandas DataFrame, "
                f"got {type(obj).__name__}"
            )
        listing = self._check_expression(obj, spec_args)
        backend = self._engine_of(obj)
        sql = backend.compile(obj)
        sql_hash = hashlib.sha256(sql.encode()).hexdigest()
        if backend is self._backend:
            frame = self._execute(sql, obj)  # exactly the SQL that was hashed and audited
        else:
            with backend._open_gate():
                frame = obj.to_pandas()
        plans = {**self._views, **self._remote_views}
        sources = sorted({p.dataset for v, p in plans.items() if v in _leaf_names(obj)})
        return frame, sources, sql_hash, listing

    def _engine_of(self, expr: ir.Table):
        """The gated backend an expression runs on (this workspace's DuckDB, or a node's
        PostgreSQL or Spark)."""
        for leaf in Lineage(expr).tables():
            source = getattr(leaf, "source", None)
            if source is not None and any(source is c for c in self._other_engines()):
                return source
        return self._backend

    def _execute(self, sql: str, expr: ir.Table) -> pd.DataFrame:
        """Run compiled SQL and convert it as Ibis would (one compile per release)."""
        from ibis.backends.duckdb.converter import DuckDBPandasData

        with self._backend._open_gate() as con:
            con._run_pre_execute_hooks(expr)  # registers in-memory tables (e.g. a month spine)
            table = con.con.sql(sql).to_arrow_table()
        columns = {}
        for name, col in zip(table.column_names, table.columns, strict=True):
            nested = pa.types.is_nested(col.type) or pa.types.is_dictionary(col.type)
            columns[name] = col.to_pylist() if nested or col.null_count else col.to_pandas()
        return DuckDBPandasData.convert_table(pd.DataFrame(columns), expr.schema())

    def _check_expression(self, expr: ir.Table, spec_args) -> bool:
        """Refuse what may not be released; True when it is a direct-care record listing."""
        lineage = Lineage(expr)
        for leaf in lineage.tables():
            source = getattr(leaf, "source", None)
            own = (source is self._backend and leaf.name in self._views) or (
                any(source is c for c in self._other_engines()) and leaf.name in self._remote_views
            )
            if not own and not isinstance(leaf, ibis.expr.operations.InMemoryTable):
                raise GovernanceError(
                    f"the expression reads {leaf.name!r}, which is not a governed table of this "
                    "workspace; build it from ws.table(...)"
                )
        columns = lineage.columns()
        if self.purpose.level is Level.IDENTIFIABLE:
            return not any(info.aggregated for info in columns.values())
        declared = set(spec_args["counts"]) | set(spec_args["statistics"] or {})
        declared |= set(spec_args["magnitudes"] or {})
        measures = [c for c, info in columns.items() if c in declared or info.aggregated]
        for name, info in columns.items():
            if UNKNOWN in info.sources:
                raise GovernanceError(
                    f"cannot trace where output column {name!r} comes from, so it is not "
                    "released; simplify the expression (no raw SQL or scalar subqueries)"
                )
            identifiers = sorted(c for (view, c) in info.sources if self._is_direct(view, c))
            if identifiers:
                raise GovernanceError(
                    f"output column {name!r} is computed from direct identifier(s) "
                    f"{', '.join(identifiers)}: under {self.purpose.id} only aggregates leave "
                    "the workspace. Count people instead (e.g. .nunique())"
                )
            if name not in measures and info.direct and info.direct[1] in FINE_QUASI_IDENTIFIERS:
                raise GovernanceError(
                    f"output column {name!r} is {info.direct[1]} itself; coarsen it before "
                    "release (a year, an age band, an area at a higher level)"
                )
            if name in declared and not info.aggregated:
                raise GovernanceError(
                    f"measure {name!r} is not computed by an aggregation: release aggregate "
                    "tables (group_by(...).aggregate(...)), not rows"
                )
        # What is not computed by the aggregation is a dimension, whatever its type (a decile).
        spec_args["dimensions"] = [
            *spec_args["dimensions"],
            *(c for c in columns if c not in measures and c not in spec_args["dimensions"]),
        ]
        if not measures:
            raise GovernanceError(
                "a release needs at least one count or statistic computed by an aggregation: "
                "record-level rows are not released under a planning purpose"
            )
        return False

    def _is_direct(self, view: str, column: str) -> bool:
        plan = self._views.get(view) or self._remote_views.get(view)
        if plan is None:
            return False
        return dataset(plan.dataset).column(column).classification is ColumnClass.DIRECT_IDENTIFIER

    def _overlap(self, obj, frame: pd.DataFrame):
        """Rows to hide because they would difference against an earlier release."""
        if not isinstance(obj, ir.Table) or self.purpose.disclosure.min_count <= 1:
            return None
        aggregate = top_aggregate(obj)
        if aggregate is None:
            return None

        engine = self._engine_of(obj)

        def run(expr):
            with engine._open_gate():
                return expr.to_pandas()

        stars = [n for n, v in aggregate.metrics.items() if isinstance(v, ops.CountStar)]
        is_root = aggregate is obj.op() or (
            stars
            and carried(obj, aggregate, [*aggregate.groups, stars[0]])
            and not _filters_after(obj, aggregate)
        )
        exact = frame if is_root else run(aggregate.to_expr())
        hide = self._ledger.check(aggregate, exact, run)
        if is_root or not hide.any():
            return hide if is_root else None
        raise GovernanceError(
            "this release overlaps an earlier one so closely that the difference would reveal "
            f"a group of 1-{self.purpose.disclosure.min_count - 1} records; it is not released"
        )

    def _control(self, frame, sources, title, spec_args, listing, forced=None) -> Released:
        source = f"{self.org} {', '.join(sources)} ({self.purpose.id})"
        if listing:
            empty = pd.DataFrame(index=frame.index)
            return Released(
                frame.reset_index(drop=True),
                empty,
                title,
                source,
                rules_note(self.purpose.disclosure, 0, listing=True),
                0,
                listing=True,
            )
        rules = self.purpose.disclosure
        spec = infer_spec(frame, **{k: v for k, v in spec_args.items() if v})
        result = apply_disclosure_control(frame, spec, rules, forced)
        n = result.n_primary + result.n_secondary
        return Released(result.data, result.suppressed, title, source, rules_note(rules, n), n)

    # -- federation -----------------------------------------------------------------------
    def federated(
        self, query, orgs: Sequence[str] | None = None, *, title: str | None = None, **spec
    ):
        """Run ``query`` at each node an agreement permits (default: every provider of an
        agreement naming this org for this purpose) and combine the node-released results.
        See ``fdp_kernel.federation``."""
        from fdp_kernel.federation import run_federated

        return run_federated(self, query, orgs, title, spec)

    def _node(self, org: str, agreement) -> NodeWorkspace:
        """The session's workspace at a provider node under one agreement (opened once)."""
        key = (org, agreement.id)
        if key not in self._nodes:
            self._nodes[key] = NodeWorkspace(self, org, agreement)
        return self._nodes[key]

    # -- provenance -----------------------------------------------------------------------
    def provenance(self) -> dict[str, Any]:
        """What a report records about how its figures were made (no secrets)."""
        stores = {}
        for code in sorted(self._attached):  # the store's identity: its metadata, size, time
            info = self.federation.org(code).store.stat()
            stores[code] = (info.st_size, info.st_mtime_ns)
        for code in sorted(self._remote):
            org = self.federation.org(code)
            stores[code] = (org.store, str(org.data or ""))
        plans = [*self._views.values(), *self._remote_views.values()]
        for node in self._nodes.values():
            plans += [*node._views.values(), *node._remote_views.values()]
        agreements = sorted({p.agreement for p in plans if p.agreement})
        agreements = sorted({*agreements, *(a for _, a in self._nodes)})
        fed_hash = hashlib.sha256(self.federation.path.read_bytes()).hexdigest()[:16]
        return {
            "user": self.user,
            "org": self.org,
            "purpose": self.purpose.id,
            "agreements": agreements,
            "datasets": sorted({p.dataset for p in plans}),
            "nodes": sorted({org for org, _ in self._nodes}),
            "data_fingerprint": hashlib.sha256(repr(sorted(stores.items())).encode()).hexdigest()[
                :16
            ],
            "policy_fingerprint": fed_hash,
            "fdp_version": __version__,
        }

    def close(self) -> None:
        for con in (self._backend, *self._other_engines()):
            with con._open_gate():
                con.disconnect()

    def __enter__(self) -> Workspace:
        return self

    def __exit__(self, *exc) -> None:
        self.close()

    def __repr__(self) -> str:
        return f"<Workspace {self.user} at {self.org} for {self.purpose.id}>"


def _filters_after(expr: ir.Table, aggregate) -> bool:
    """Whether rows of the aggregate are filtered or limited away before release."""
    rel = expr.op()
    while rel is not aggregate:
        if isinstance(rel, ops.Filter | ops.Limit):
            return True
        rel = rel.parent
    return False


def _leaf_names(expr: ir.Table) -> set[str]:
    return {leaf.name for leaf in Lineage(expr).tables()}


class NodeWorkspace(Workspace):
    """A requester's federated query running at a provider node, under one agreement: the
    node's own store, policy and key, only what the agreement covers, audited at the node."""

    def __init__(self, requester: Workspace, org: str, agreement) -> None:
        from fdp_kernel.federation import restricted_purpose

        self.requester = requester.org
        self.agreement = agreement
        super().__init__(
            requester.federation,
            requester.user,
            restricted_purpose(requester.purpose, agreement),
            org,
            reason=f"federated request from {requester.org} under {agreement.id}",
        )

    def _event(self, action: str, decision: str, reason: str = "", agreement=None, **details):
        return super()._event(
            action,
            decision,
            reason,
            agreement or self.agreement.id,
            requester=self.requester,
            **details,
        )

    def federated(self, *args, **kwargs):
        raise GovernanceError("a federated request cannot start further federated requests")


__all__ = ["DisclosureRules", "Magnitude", "Workspace", "connect", "find_federation"]
