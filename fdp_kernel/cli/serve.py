"""``fdp serve``: run the node service (docs/deploy.md)."""

from __future__ import annotations

import argparse
import signal
from pathlib import Path


def add_serve_parser(sub, common: argparse.ArgumentParser) -> None:
    p = sub.add_parser(
        "serve",
        parents=[common],
        help="run the node service: the only process that reads stores and keys and writes audit",
        description="Run the node service for this machine's nodes, as a service account that "
        "analysts are not. Kernels connect with FDP_SERVICE set to the socket folder (same "
        "machine: identity from the connecting process's OS account) or to grpc+tls://HOST:PORT "
        "(a bearer token the service knows). Every request is checked, run and audited here. "
        "See docs/deploy.md for systemd, accounts and file modes.",
    )
    p.add_argument("--federation", type=Path, help="federation.yaml or its folder")
    where = p.add_mutually_exclusive_group(required=True)
    where.add_argument(
        "--socket-dir",
        type=Path,
        help="serve on Unix sockets in this folder (node.sock, ident.sock), e.g. /run/fdp",
    )
    where.add_argument("--listen", metavar="HOST:PORT", help="serve over TCP with TLS")
    p.add_argument("--tls-cert", type=Path, help="with --listen: the certificate chain (PEM)")
    p.add_argument("--tls-key", type=Path, help="with --listen: the private key (PEM)")
    p.add_argument(
        "--tokens", type=Path, help="token digests the service accepts (YAML; docs/deploy.md)"
    )
    p.add_argument(
        "--node",
        metavar="ORG",
        action="append",
        help="a node this service hosts (repeatable; default every node of the federation)",
    )


def run_serve_command(args: argparse.Namespace, out, err) -> int:
    from fdp_kernel.config import find_federation
    from fdp_kernel.service.run import start

    federation = find_federation(args.environ, args.federation)
    running = start(
        federation,
        socket_dir=args.socket_dir,
        listen=args.listen,
        tls_cert=args.tls_cert,
        tls_key=args.tls_key,
        tokens=args.tokens,
        nodes=args.node,
    )
    hosted = ", ".join(sorted(running.server.hosted))
    print(f"fdp serve: {hosted} at {running.location} (FDP_SERVICE={running.location})", file=err)

    def stop(signum, frame):
        running.stop()

    signal.signal(signal.SIGTERM, stop)
    try:
        running.server.serve()
    except KeyboardInterrupt:
        running.stop()
    return 0
