"""The ``fdp`` command line. ``main(argv, environ)`` is the testable entry point.

One module per command family (``synth``: synth and demo, ``catalog``, ``audit``,
``transparency``, ``report``, ``ingest``), each with ``add_*_parser(sub, common)`` and
``run_*_command(args, out, err)``; ``arguments`` holds the argument types they share. Modules
import only downward (arguments <- commands <- this package) and import anything heavy inside
their functions, so ``fdp --help`` stays light.

User errors (``FdpError``) print one line without a traceback and exit with the class's code;
argument errors exit 2.
"""

from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Mapping, Sequence

from fdp_kernel.cli import audit, catalog, ingest, report, serve, synth, transparency
from fdp_kernel.errors import FdpError
from fdp_kernel.version import __version__

COMMANDS = {
    "synth": synth.run_synth_command,
    "demo": synth.run_demo_command,
    "catalog": catalog.run_catalog_command,
    "audit": audit.run_audit_command,
    "report": report.run_report_command,
    "transparency": transparency.run_transparency_command,
    "ingest": ingest.run_ingest_command,
    "serve": serve.run_serve_command,
}


def build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="fdp",
        description="Federated data platform for health and care: synthetic federation, "
        "governed access, reports.",
    )
    parser.add_argument("--version", action="version", version=f"fdp {__version__}")
    common = argparse.ArgumentParser(add_help=False)
    common.add_argument("-q", "--quiet", action="store_true", help="no progress output")
    sub = parser.add_subparsers(dest="command", metavar="COMMAND")
    sub.required = True
    synth.add_synth_parser(sub, common)
    synth.add_demo_parser(sub, common)
    catalog.add_catalog_parser(sub, common)
    audit.add_audit_parser(sub, common)
    transparency.add_transparency_parser(sub, common)
    report.add_report_parser(sub, common)
    ingest.add_ingest_parser(sub, common)
    serve.add_serve_parser(sub, common)
    return parser


def main(
    argv: Sequence[str] | None = None,
    environ: Mapping[str, str] | None = None,
    out=None,
    err=None,
) -> int:
    out = out or sys.stdout
    err = err or sys.stderr
    environ = os.environ if environ is None else environ
    parser = build_parser()
    try:
        args = parser.parse_args(argv)
    except SystemExit as exc:  # argparse has printed its message
        return int(exc.code or 0)
    args.environ = environ
    try:
        return COMMANDS[args.command](args, out, err)
    except FdpError as exc:
        print(f"fdp {args.command}: error: {exc}", file=err)
        return exc.exit_code
    except KeyboardInterrupt:
        print(f"fdp {args.command}: interrupted", file=err)
        return 130


__all__ = ["COMMANDS", "build_parser", "main"]
