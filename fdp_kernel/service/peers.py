"""Federation service to service: a requester's node service asks each provider's node service,
which applies its own policy, rules and audit.

The federation file says which service hosts which nodes (``services:``). When a person's
federated request reaches a provider this service does not host, the workspace's node for it
is a ``RemoteNode``: the query, already encoded, goes to the provider's service with this
service's token (the provider knows it from its token file as ``service: <id>``), naming the
requester organisation, the purpose, the person and the agreement. The provider checks that
this service hosts the requester organisation, finds the agreement in force itself, runs the
query on its own governed tables under that agreement, applies its disclosure control and
audits the request (with the person, and the service that relayed it).
"""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import ibis
import ibis.expr.types as ir
import yaml

from fdp_kernel.catalog import dataset
from fdp_kernel.config import Federation
from fdp_kernel.errors import ConfigError, GovernanceError
from fdp_kernel.governance.released import Released
from fdp_kernel.service import codec, protocol
from fdp_kernel.service.client import Channel, spec_body


def load_peer_tokens(path: Path) -> dict[str, str]:
    """``peers.yaml``: peer service id -> the token this service presents to it (a secret
    file, readable by the service account only)."""
    try:
        raw = yaml.safe_load(Path(path).read_text()) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the peer tokens ({exc})") from None
    if not isinstance(raw, dict) or not all(isinstance(v, str) for v in raw.values()):
        raise ConfigError(f"{path}: expected 'service-id: token' lines. Fix: see docs/deploy.md")
    return {str(k): v for k, v in raw.items()}


class Peers:
    """The other node services of the federation, as this service (``me``) reaches them."""

    def __init__(self, fed: Federation, me: str, tokens: Mapping[str, str], **options: Any):
        if me not in fed.services:
            raise ConfigError(f"--service-id {me}: no such service in the federation file")
        self.fed, self.me, self.tokens, self.options = fed, me, dict(tokens), options
        self._channels: dict[str, Channel] = {}

    def hosts(self, org: str) -> bool:
        return org in self.fed.services[self.me].nodes

    def channel(self, org: str) -> Channel:
        service = self.fed.service_of(org)
        if service is None:
            raise ConfigError(f"no node service hosts {org} in the federation file")
        if service.id not in self._channels:
            token = self.tokens.get(service.id)
            if token is None:
                raise ConfigError(
                    f"this service has no token for peer service {service.id} (hosting {org}): "
                    "add it to the --peer-tokens file"
                )
            self._channels[service.id] = Channel(service.location, token, **self.options)
        return self._channels[service.id]

    def node(self, requester, org: str, agreement) -> RemoteNode:
        return RemoteNode(self, requester, org, agreement)


class RemoteNode:
    """A provider node another service hosts, as a federated query sees it: tables to build on
    (``@dataset``, the columns the agreement covers) and a release done by that service."""

    def __init__(self, peers: Peers, requester, org: str, agreement) -> None:
        self.peers, self.org, self.agreement = peers, org, agreement
        self.requester = requester
        self.federation, self.today = requester.federation, requester.today
        self.purpose = requester.purpose

    def table(
        self, name: str, *, columns: Sequence[str] | None = None, source: str | None = None
    ) -> ir.Table:
        ds = dataset(name)
        agreed = self.agreement.datasets.get(name, ())
        allowed = [c for c in ds.column_names if c in self.purpose.datasets.get(name, ())]
        wanted = [c for c in allowed if c in agreed and (columns is None or c in columns)]
        schema = ds.schema()
        return ibis.table(ibis.schema({c: schema[c] for c in wanted}), name=f"@{name}")

    def release(self, expr: ir.Table, *, title: str | None = None, **spec: Any) -> Released:
        table = self.peers.channel(self.org).get(self._body(expr, title, **spec))
        return protocol.released_from_arrow(table)

    def partial(self, expr: ir.Table, *, title: str | None = None):
        """The provider's exact partial of ``expr``, passed service to service (only under an
        agreement that says so: the provider checks)."""
        from fdp_kernel.governance.release import Partial

        body = self._body(expr, title) | {"partial": True}
        table = self.peers.channel(self.org).get(body)
        data, _, meta = protocol.table_from_arrow(table)
        return Partial(data, tuple(meta["dimensions"]), tuple(meta["counts"]), meta["sums"],
                       tuple(meta["sources"]))  # fmt: skip

    def _body(self, expr: ir.Table, title: str | None, **spec: Any) -> dict[str, Any]:
        return {
            "kind": "node",
            "org": self.org,
            "requester": self.requester.org,
            "purpose": self.requester.purpose.id,
            "user": self.requester.user,
            "agreement": self.agreement.id,
            "expr": codec.encode(expr),
            "title": title,
            **spec_body(**spec),
        }

    def federated(self, *args, **kwargs):
        raise GovernanceError(
            "a federated request cannot start further federated requests",
            rule="federated:nested",
        )

    def close(self) -> None:
        return None
