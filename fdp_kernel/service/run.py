"""Starting the node service: its sockets or TLS listener, its tokens, its nodes."""

from __future__ import annotations

import os
import threading
from dataclasses import dataclass
from pathlib import Path

from fdp_kernel.errors import UsageError
from fdp_kernel.service.client import FLIGHT_SOCKET, IDENT_SOCKET
from fdp_kernel.service.identity import PeerIdentityServer, TokenRegistry, load_token_file
from fdp_kernel.service.server import NodeService


@dataclass
class Running:
    server: NodeService
    ident: PeerIdentityServer | None
    location: str  # what clients set FDP_SERVICE to
    thread: threading.Thread | None = None

    def stop(self) -> None:
        if self.ident is not None:
            self.ident.close()
        self.server.shutdown()
        if self.thread is not None:
            self.thread.join(timeout=10)


def start(
    federation: Path,
    *,
    socket_dir: Path | None = None,
    listen: str | None = None,
    tls_cert: Path | None = None,
    tls_key: Path | None = None,
    tokens: Path | None = None,
    nodes: list[str] | None = None,
    service_id: str | None = None,
    peer_tokens: Path | None = None,
    background: bool = False,
) -> Running:
    """Start the service on a Unix socket folder (``socket_dir``) or a TLS listener
    (``listen`` HOST:PORT with ``tls_cert``/``tls_key``). With ``background`` it serves on a
    thread and returns; else the caller runs ``server.serve()``."""
    if (socket_dir is None) == (listen is None):
        raise UsageError("give either --socket-dir (this machine) or --listen HOST:PORT (TLS)")
    registry = TokenRegistry()
    if tokens is not None:
        load_token_file(tokens, registry)
    ident = None
    certificates = None
    if socket_dir is not None:
        folder = Path(socket_dir)
        folder.mkdir(parents=True, exist_ok=True)
        flight_sock = folder / FLIGHT_SOCKET
        flight_sock.unlink(missing_ok=True)
        location = f"grpc+unix://{flight_sock}"
        ident = PeerIdentityServer(folder / IDENT_SOCKET, registry)
        public = str(folder)
    else:
        if tls_cert is None or tls_key is None:
            raise UsageError("--listen needs --tls-cert and --tls-key: TCP is served over TLS only")
        host, _, port = listen.rpartition(":")
        if not host or not port.isdigit():
            raise UsageError(f"--listen {listen!r}: write HOST:PORT, e.g. 0.0.0.0:8815")
        location = f"grpc+tls://{host}:{port}"
        certificates = [(Path(tls_cert).read_bytes(), Path(tls_key).read_bytes())]
        public = location
    peers = None
    if service_id is not None:
        from fdp_kernel.config import load_federation
        from fdp_kernel.service.peers import Peers, load_peer_tokens

        fed = load_federation(federation)
        secrets = load_peer_tokens(peer_tokens) if peer_tokens else {}
        peers = Peers(fed, service_id, secrets)
        nodes = nodes or list(fed.services[service_id].nodes)
    server = NodeService(
        location, federation, registry, hosted=nodes, peers=peers, tls_certificates=certificates
    )
    if socket_dir is not None:
        os.chmod(Path(socket_dir) / FLIGHT_SOCKET, 0o666)  # the folder's mode decides who may
    if ident is not None:
        ident.start()
    running = Running(server, ident, public)
    if background:
        running.thread = threading.Thread(target=server.serve, daemon=True, name="fdp-serve")
        running.thread.start()
    return running
