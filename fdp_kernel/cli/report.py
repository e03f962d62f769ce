"""``fdp report list|run|schedule|index``: parameterised templates into offline HTML reports.

``add_report_parser(subparsers, common)`` registers the command; ``run_report_command(args,
out, err)`` runs it and returns the exit code, raising ``FdpError`` subclasses for the
caller to print (UsageError 2, ConfigError 3, StoreError 4, GovernanceError 5, else 1).
"""

from __future__ import annotations

import argparse
import os
from pathlib import Path

from fdp_kernel.errors import ConfigError, FdpError, GovernanceError, StoreError, UsageError

DEFAULT_OUT = Path("reports")
_ERRORS: dict[int, type[FdpError]] = {4: StoreError}


def _seconds(text: str) -> int:
    try:
        value = int(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"{text!r} is not a whole number of seconds") from None
    if value <= 0:
        raise argparse.ArgumentTypeError("must be a positive number of seconds")
    return value


def add_report_parser(subparsers, common_parent: argparse.ArgumentParser):
    from fdp_kernel.reports.schedule import DEFAULT_TEMPLATES, DEFAULT_TIMEOUT

    report = subparsers.add_parser(
        "report",
        help="list, run and schedule parameterised report templates",
        description="Execute parameterised notebook templates with papermill into "
        "self-contained HTML reports under reports/<run>/<org>/, with provenance, and keep "
        "reports/index.html up to date. See docs/reports.md.",
    )
    sub = report.add_subparsers(dest="report_command", metavar="ACTION")
    sub.required = True

    def templates_option(p: argparse.ArgumentParser) -> None:
        p.add_argument(
            "--templates",
            type=Path,
            default=DEFAULT_TEMPLATES,
            help=f"template folder (default: {DEFAULT_TEMPLATES})",
        )

    def run_options(p: argparse.ArgumentParser) -> None:
        templates_option(p)
        p.add_argument(
            "--out", type=Path, default=DEFAULT_OUT, help="reports folder (default: reports)"
        )
        p.add_argument(
            "--federation",
            type=Path,
            help="federation.yaml or its folder (default: $FDP_FEDERATION or data/demo); "
            "passed to the notebooks as FDP_FEDERATION",
        )
        p.add_argument(
            "--run",
            help="name of the run (default: a new id like 2026-11-23T2015-ab12cd); the same "
            "name again overwrites that run's reports",
        )
        p.add_argument(
            "--timeout",
            type=_seconds,
            help=f"seconds a cell may run before the kernel is stopped (default {DEFAULT_TIMEOUT})",
        )

    lst = sub.add_parser(
        "list",
        parents=[common_parent],
        help="show every template and its parameters",
        description="Every template with its parameters: name, type, default, allowed values "
        "and description, as declared in its `parameters` cell.",
    )
    templates_option(lst)

    run = sub.add_parser(
        "run",
        parents=[common_parent],
        help="run one template for one organisation",
        description="Validate the parameters against the template's declaration (before any "
        "kernel starts), execute it, and write reports/<run>/<org>/<template>.ipynb, .html "
        "and .json (status and provenance). Prints the HTML path.",
    )
    run.add_argument("template", help="template name (see `fdp report list`)")
    run.add_argument("--org", required=True, help="ODS code of the organisation to report on")
    run.add_argument(
        "-p",
        "--param",
        action="append",
        default=[],
        metavar="NAME=VALUE",
        help="a template parameter (repeatable), e.g. --param months=12",
    )
    run_options(run)

    sched = sub.add_parser(
        "schedule",
        parents=[common_parent],
        help="run every report of a schedule file in parallel",
        description="Run the templates x organisations x parameters of a YAML schedule file in "
        "parallel, one process per report; one failure does not stop the others. Exits "
        "non-zero naming each failed report, its cell and error.",
    )
    sched.add_argument("file", type=Path, help="the schedule file (YAML)")
    run_options(sched)
    sched.add_argument(
        "--jobs", type=int, help=f"reports at once (default: cores, here {os.cpu_count()})"
    )

    index = sub.add_parser(
        "index",
        parents=[common_parent],
        help="rebuild reports/index.html from the reports on disk",
        description="Rebuild the index page from the status records under the reports folder.",
    )
    index.add_argument("--out", type=Path, default=DEFAULT_OUT, help="reports folder")
    return report


def run_report_command(args: argparse.Namespace, out, err) -> int:
    environ = getattr(args, "environ", None)
    environ = os.environ if environ is None else environ
    handler = {"list": _list, "run": _run, "schedule": _schedule, "index": _index}
    return handler[args.report_command](args, environ, out, err)


def _list(args, environ, out, err) -> int:
    from fdp_kernel.reports.params import find_templates, load_template

    invalid = []
    templates = find_templates(args.templates)
    if not templates:
        print(f"no templates in {args.templates}", file=out)
    for name, path in templates.items():
        try:
            template = load_template(path)
        except ConfigError as exc:
            invalid.append(name)
            print(f"{name}: INVALID: {exc}\n", file=out)
            continue
        suits = f" (for {', '.join(template.org_types)})" if template.org_types else ""
        print(f"{name}: {template.title}{suits}", file=out)
        rows = [
            (p.name, p.type, repr(p.default), ", ".join(map(str, p.allowed)) or "-", p.description)
            for p in template.params.values()
        ]
        rows.insert(0, ("parameter", "type", "default", "allowed", "description"))
        widths = [max(len(r[i]) for r in rows) for i in range(4)]
        for row in rows:
            cells = [c.ljust(w) for c, w in zip(row[:4], widths, strict=True)]
            print("  " + "  ".join(cells) + "  " + row[4], file=out)
        print(file=out)
    if invalid:
        raise ConfigError(f"templates with invalid parameter declarations: {', '.join(invalid)}")
    return 0


def _planner(args, environ, run: str | None, timeout: int | None):
    from fdp_kernel.config import find_federation, load_federation
    from fdp_kernel.reports.schedule import DEFAULT_TIMEOUT, Planner

    # None if there is none (the planner then checks no organisations); one that is named but
    # invalid is an error (ConfigError), never skipped.
    federation = find_federation(environ, args.federation, required=False)
    return Planner(
        templates=args.templates,
        out=args.out,
        run=run,
        federation=load_federation(federation).path if federation is not None else None,
        timeout=timeout or DEFAULT_TIMEOUT,
        environ=environ,
    )


def _run(args, environ, out, err) -> int:
    from fdp_kernel.reports.index import write_index
    from fdp_kernel.reports.runner import run_report
    from fdp_kernel.reports.schedule import ensure_kernel

    planner = _planner(args, environ, args.run, args.timeout)
    job = planner.job(args.template, args.org, args.param)  # every check before the kernel
    ensure_kernel(err)
    if not getattr(args, "quiet", False):
        print(f"running {job.name} for {job.org} (run {job.run})", file=err, flush=True)
    try:
        result = run_report(job)
    finally:
        write_index(planner.out)
    if result.status == "ok":
        if not getattr(args, "quiet", False):
            print(f"ok in {result.seconds:.1f} s", file=err)
        print(result.html, file=out)
        return 0
    kept = job.folder / f"{job.name}.failed.ipynb"
    hint = f"; the executed notebook is kept at {kept}" if kept.exists() else ""
    message = f"report {job.name} for {job.org} failed: {result.reason}{hint}"
    if result.exit_code == GovernanceError.exit_code:  # refused, and audited, in the kernel
        raise GovernanceError(message, rule="report:refused")
    raise _ERRORS.get(result.exit_code, FdpError)(message)


def _schedule(args, environ, out, err) -> int:
    from fdp_kernel.reports.index import write_index
    from fdp_kernel.reports.schedule import ensure_kernel, plan_schedule, read_schedule, run_jobs

    if args.jobs is not None and args.jobs < 1:
        raise UsageError("--jobs must be at least 1")
    raw = read_schedule(args.file)
    timeout = args.timeout or raw.get("timeout")
    if timeout is not None and (type(timeout) is not int or timeout <= 0):
        raise ConfigError(f"{args.file}: 'timeout' must be a positive number of seconds")
    run = args.run or (str(raw["run"]) if raw.get("run") is not None else None)
    planner = _planner(args, environ, run, timeout)
    jobs = plan_schedule(raw, planner, args.file)
    ensure_kernel(err)
    quiet = getattr(args, "quiet", False)
    if not quiet:
        print(f"run {planner.run}: {len(jobs)} reports", file=err, flush=True)
    try:
        results = run_jobs(jobs, workers=args.jobs, err=None if quiet else err)
    finally:
        index = write_index(planner.out)
    print(index, file=out)
    failed = [r for r in results if r.status != "ok"]
    if not failed:
        return 0
    codes = {r.exit_code for r in failed}
    error = _ERRORS.get(codes.pop(), FdpError) if len(codes) == 1 else FdpError
    lines = "\n".join(f"  {r.org} {r.template}: {r.reason}" for r in failed)
    raise error(f"{len(failed)} of {len(results)} reports failed (see {index}):\n{lines}")


def _index(args, environ, out, err) -> int:
    from fdp_kernel.reports.index import write_index

    print(write_index(args.out), file=out)
    return 0
