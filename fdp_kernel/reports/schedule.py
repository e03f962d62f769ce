"""Plan report jobs (from a command line or a schedule file) and run them in parallel.

Everything is validated before the first kernel starts: templates, parameters, organisations,
the federation, the Jupyter kernel. Jobs then run in a process pool of ``os.cpu_count()``
workers, one fresh process per report (``max_tasks_per_child=1``), so no two kernels share a
process and one crash cannot take the others down. A schedule file::

    run: nightly            # optional: the run's name (default: a new run id)
    timeout: 600            # optional: seconds per cell
    reports:
      - template: elective_recovery
        orgs: [RSA, RSB, RSC, QSY]
        params: {months: 12}
"""

from __future__ import annotations

import datetime as dt
import multiprocessing
import os
import re
import secrets
import sys
import time
from collections.abc import Iterable, Mapping
from concurrent.futures import ProcessPoolExecutor, as_completed
from pathlib import Path
from typing import Any, TextIO

import yaml

from fdp_kernel.errors import ConfigError, UsageError
from fdp_kernel.reports.params import find_templates, load_template, resolve
from fdp_kernel.reports.provenance import git_revision
from fdp_kernel.reports.runner import (
    KERNEL,
    REPO_ROOT,
    ReportJob,
    ReportResult,
    kernel_env,
    run_report,
)

DEFAULT_TEMPLATES = REPO_ROOT / "templates"
DEFAULT_TIMEOUT = 600
_RUN_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]{0,63}")


def new_run_id() -> str:
    """``2026-11-23T2015-ab12cd``: local time to the minute and a random suffix."""
    return f"{dt.datetime.now():%Y-%m-%dT%H%M}-{secrets.token_hex(3)}"


def check_run_name(name: str) -> str:
    if not _RUN_NAME.fullmatch(name):
        raise UsageError(f"run name {name!r}: use letters, digits, '.', '_' or '-' (max 64)")
    return name


def ensure_kernel(err: TextIO | None = None) -> str:
    """Make sure kernelspec ``python3`` runs this Python; install it (sys-prefix) if missing."""
    import subprocess

    from jupyter_client.kernelspec import KernelSpecManager, NoSuchKernel

    try:
        spec = KernelSpecManager().get_kernel_spec(KERNEL)
    except NoSuchKernel:
        cmd = [sys.executable, "-m", "ipykernel", "install", "--sys-prefix", "--name", KERNEL]
        done = subprocess.run(cmd, capture_output=True, text=True)
        if done.returncode != 0:
            raise ConfigError(f"cannot install the python3 kernel: {done.stderr.strip()}") from None
        if err is not None:
            print(f"installed Jupyter kernel {KERNEL!r} into {sys.prefix}", file=err)
        return "installed"
    exe = spec.argv[0] if spec.argv else ""
    here = Path(sys.executable)
    if exe not in ("python", "python3", f"python3.{sys.version_info.minor}") and (
        Path(exe).parent != here.parent
    ):
        raise ConfigError(
            f"Jupyter kernel {KERNEL!r} ({spec.resource_dir}) runs {exe}, not this environment's "
            f"Python ({here}), so reports could not import fdp_kernel. Fix: remove that "
            f"kernelspec, then `{here} -m ipykernel install --sys-prefix --name {KERNEL}`"
        )
    return "ok"


class Planner:
    """Turns (template, org, parameters) into validated jobs sharing one run and settings."""

    def __init__(
        self,
        *,
        templates: Path,
        out: Path,
        run: str | None,
        federation: Path | None,
        timeout: int = DEFAULT_TIMEOUT,
        environ: Mapping[str, str] | None = None,
    ) -> None:
        self.templates = find_templates(templates)
        self.out = Path(out).resolve()
        self.run = check_run_name(run) if run else new_run_id()
        self.federation = federation
        if timeout <= 0:
            raise UsageError("--timeout must be a positive number of seconds")
        self.timeout = timeout
        self.env = kernel_env(federation, dict(os.environ if environ is None else environ))
        self.git = git_revision(REPO_ROOT)
        self._orgs = _federation_orgs(federation)

    def template(self, name: str) -> Path:
        if name.endswith(".ipynb") and Path(name).exists():
            return Path(name).resolve()
        if name not in self.templates:
            known = ", ".join(self.templates) or "none"
            raise UsageError(f"no template {name!r}; templates: {known}")
        return self.templates[name].resolve()

    def job(self, template: str, org: str | None, given: Mapping[str, Any] | Iterable[str]):
        path = self.template(template)
        spec = load_template(path)
        values = resolve(spec, org, given)
        code = str(values["org"])
        if self._orgs is not None and code not in self._orgs:
            raise UsageError(
                f"organisation {code} is not in the federation ({self.federation}); "
                f"organisations: {', '.join(self._orgs)}"
            )
        if self._orgs is not None and spec.org_types and self._orgs[code] not in spec.org_types:
            suited = ", ".join(c for c, t in self._orgs.items() if t in spec.org_types)
            raise UsageError(
                f"template {spec.name} is for {' or '.join(spec.org_types)} organisations and "
                f"{code} is of type {self._orgs[code]}; it suits: {suited or 'none here'}"
            )
        return ReportJob(
            template=path,
            org=code,
            params=values,
            run=self.run,
            out=self.out,
            federation=self.federation,
            timeout=self.timeout,
            env=self.env,
            git_revision=self.git,
        )


def _federation_orgs(federation: Path | None) -> dict[str, str] | None:
    """ODS code -> organisation type, for checking orgs before anything runs."""
    if federation is None:
        return None
    from fdp_kernel.config import load_federation

    return {o.code: o.org_type for o in load_federation(federation).organisations.values()}


def read_schedule(path: Path) -> dict[str, Any]:
    """The schedule file, checked for shape (``ConfigError`` naming the entry)."""
    try:
        raw = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
    except OSError as exc:
        raise ConfigError(f"{path}: cannot read the schedule ({exc.strerror or exc})") from None
    except yaml.YAMLError as exc:
        raise ConfigError(f"{path}: not valid YAML ({exc})") from None
    if not isinstance(raw, dict) or not isinstance(raw.get("reports"), list) or not raw["reports"]:
        raise ConfigError(f"{path}: expected a mapping with a non-empty 'reports' list")
    unknown = set(raw) - {"run", "timeout", "reports"}
    if unknown:
        raise ConfigError(f"{path}: unknown keys {sorted(unknown)}; use run, timeout, reports")
    for i, entry in enumerate(raw["reports"]):
        where = f"{path}: reports[{i}]"
        if not isinstance(entry, dict) or not isinstance(entry.get("template"), str):
            raise ConfigError(f"{where}: each entry needs 'template: NAME'")
        if set(entry) - {"template", "orgs", "params"}:
            raise ConfigError(f"{where}: use only template, orgs and params")
        orgs = entry.get("orgs")
        orgs = [orgs] if isinstance(orgs, str) else orgs
        if not isinstance(orgs, list) or not orgs or not all(isinstance(o, str) for o in orgs):
            raise ConfigError(f"{where}: 'orgs' must list ODS codes, e.g. [RSA, RSB]")
        entry["orgs"] = orgs
        if not isinstance(entry.setdefault("params", {}) or {}, dict):
            raise ConfigError(f"{where}: 'params' must be a mapping, e.g. {{months: 12}}")
        entry["params"] = entry["params"] or {}
    return raw


def plan_schedule(raw: dict[str, Any], planner: Planner, path: Path) -> list[ReportJob]:
    """Every job of the schedule; all problems are listed at once, before anything runs."""
    jobs, problems, seen = [], [], set()
    for i, entry in enumerate(raw["reports"]):
        for org in entry["orgs"]:
            where = f"reports[{i}] ({entry['template']}, {org})"
            try:
                job = planner.job(entry["template"], org, entry["params"])
            except UsageError as exc:
                problems.append(f"{where}: {exc}")
                continue
            if (job.name, job.org) in seen:
                problems.append(f"{where}: listed twice (one output path per template and org)")
            seen.add((job.name, job.org))
            jobs.append(job)
    if problems:
        raise ConfigError(f"{path}: nothing was run:\n" + "\n".join(problems))
    return jobs


def _work(job: ReportJob) -> ReportResult:
    """One report in a worker process; any crash becomes a failed result."""
    try:
        return run_report(job)
    except Exception as exc:  # a report failing is a result: keep the others going
        return _lost(job, f"internal error: {type(exc).__name__}: {exc}")


def run_jobs(
    jobs: list[ReportJob], *, workers: int | None = None, err: TextIO | None = None
) -> list[ReportResult]:
    """Run ``jobs`` in parallel; one line on ``err`` per finished report, then a summary."""
    workers = max(1, min(workers or os.cpu_count() or 1, len(jobs)))
    method = "forkserver" if "forkserver" in multiprocessing.get_all_start_methods() else "spawn"
    context = multiprocessing.get_context(method)
    if method == "forkserver":  # workers fork from a server that has imported papermill once
        context.set_forkserver_preload(["fdp_kernel.reports.runner", "papermill", "nbconvert"])
    t0, results = time.perf_counter(), []
    with ProcessPoolExecutor(workers, mp_context=context, max_tasks_per_child=1) as pool:
        futures = {pool.submit(_work, job): job for job in jobs}
        try:
            for future in as_completed(futures):
                job = futures[future]
                try:
                    result = future.result()
                except Exception as exc:  # the worker process died
                    result = _lost(job, f"the worker process died ({type(exc).__name__})")
                results.append(result)
                if err is not None:
                    print(_line(result, len(results), len(jobs)), file=err, flush=True)
        except KeyboardInterrupt:
            pool.shutdown(wait=False, cancel_futures=True)
            raise
    if err is not None:
        failed = sum(r.status != "ok" for r in results)
        took = time.perf_counter() - t0
        print(
            f"{len(results)} reports in {took:.1f} s on {workers} workers: "
            f"{len(results) - failed} ok, {failed} failed",
            file=err,
        )
    return results


def _lost(job: ReportJob, reason: str) -> ReportResult:
    """Record a report that could not run at all (no notebook to keep)."""
    from fdp_kernel.reports.index import withdraw, write_record

    now = dt.datetime.now().astimezone().isoformat(timespec="seconds")
    record = {"run": job.run, "org": job.org, "template": job.name, "params": job.params}
    record |= {"started": now, "finished": now, "seconds": 0.0, "status": "failed"}
    job.folder.mkdir(parents=True, exist_ok=True)
    withdraw(job.folder, job.name, None)
    write_record(job.folder, job.name, record | {"reason": reason})
    return ReportResult(job.name, job.org, job.run, "failed", 0.0, reason, 1)


def _line(r: ReportResult, done: int, total: int) -> str:
    width = len(str(total))
    status = "ok    " if r.status == "ok" else "FAILED"
    text = f"[{done:>{width}}/{total}] {status} {r.org:<6} {r.template}  {r.seconds:.1f} s"
    return text + (f"  {r.reason}" if r.reason else "")
