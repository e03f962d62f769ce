"""Run one report: template + parameters -> executed notebook -> HTML, with provenance.

``run_report(job)`` does not raise for a failing report (cell error, timeout, dead kernel,
secret, write error): it returns a ``ReportResult`` and leaves a status record. Parameters
are validated by the caller (``params.resolve``) before this is reached, so no kernel starts
for a bad command line.

Execution is papermill's, in process, through a small engine (``fdp``) that starts the
kernel on IPC sockets in a private folder (no TCP ports to collide: papermill #511) with the
environment and working folder we give it, and keeps kernel stderr out of our output.
papermill writes nothing: the executed notebook is taken from memory, scanned for secrets,
then staged and published (``index.publish``) or, on failure, withdrawn (``index.withdraw``).
"""

from __future__ import annotations

import datetime as dt
import logging
import os
import tempfile
import time
from dataclasses import asdict, dataclass, field
from pathlib import Path
from typing import Any

import nbformat

import fdp_kernel
from fdp_kernel.errors import FdpError, GovernanceError, StoreError
from fdp_kernel.reports import provenance as prov
from fdp_kernel.reports.index import publish, withdraw, write_record
from fdp_kernel.reports.params import Value, load_template

KERNEL = "python3"
ENGINE = "fdp"
REPO_ROOT = Path(fdp_kernel.__file__).resolve().parent.parent
FEDERATION_ENV = "FDP_FEDERATION"  # as fdp_kernel.workspace (not imported: it loads Ibis)
_QUIET = logging.getLogger("fdp.reports.kernel")  # nbclient's log: we word failures ourselves
_QUIET.disabled = True
_MARKER = "papermill-error-cell-tag"
_ENGINE_READY = False  # our papermill engine is registered (once per process)


@dataclass(frozen=True)
class ReportJob:
    template: Path  # the template notebook (absolute)
    org: str
    params: dict[str, Value]  # resolved and validated, org included
    run: str
    out: Path  # the reports folder (absolute)
    federation: Path | None = None
    timeout: int = 600  # seconds per cell
    start_timeout: int = 60  # seconds for the kernel to start
    env: dict[str, str] = field(default_factory=dict, repr=False)  # the kernel's environment
    git_revision: str = "unknown"

    @property
    def name(self) -> str:
        return self.template.stem

    @property
    def folder(self) -> Path:
        return self.out / self.run / self.org


@dataclass(frozen=True)
class ReportResult:
    template: str
    org: str
    run: str
    status: str  # "ok" or "failed"
    seconds: float
    reason: str = ""
    exit_code: int = 0  # the fdp error code this failure maps to (1, 4 or 5)
    html: Path | None = None


@dataclass(frozen=True)
class Failure:
    kind: str  # cell, timeout, kernel, secret, publish
    reason: str  # one line: "cell 3 (x = 1 / 0): ZeroDivisionError: division by zero"
    exit_code: int = 1
    cell: int | None = None  # index of the cell in the template (0-based, as nbformat)
    source: str = ""  # its first line
    ename: str = ""
    evalue: str = ""

    def as_dict(self) -> dict[str, Any]:
        return {k: v for k, v in asdict(self).items() if k != "exit_code"}


def kernel_env(federation: Path | None, base: dict[str, str] | None = None) -> dict[str, str]:
    """The kernel's environment: ours, with FDP_FEDERATION and fdp_kernel importable."""
    env = dict(os.environ if base is None else base)
    env.pop(FEDERATION_ENV, None)
    if federation is not None:
        env[FEDERATION_ENV] = str(federation)
    env["PYTHONPATH"] = os.pathsep.join(filter(None, [str(REPO_ROOT), env.get("PYTHONPATH")]))
    env.setdefault("PYDEVD_DISABLE_FILE_VALIDATION", "1")  # no debugger warning in stderr
    return env


def run_report(job: ReportJob) -> ReportResult:
    started, t0 = _now(), time.perf_counter()
    job.folder.mkdir(parents=True, exist_ok=True)
    for stale in job.folder.glob(f".{job.name}.*.partial"):  # left by a killed run
        stale.unlink(missing_ok=True)
    template = load_template(job.template)
    scanner = prov.SecretScanner(prov.federation_secrets(job.federation))  # fail before a kernel
    nb, failure = _execute(job)
    seconds = round(time.perf_counter() - t0, 2)
    record: dict[str, Any] = {"run": job.run, "org": job.org, "template": job.name}
    record |= {"params": job.params, "started": started, "finished": _now(), "seconds": seconds}
    provenance = prov.report_provenance(
        record, template.sha256, job.git_revision, prov.extract(nb) if nb is not None else None
    )
    leak = scanner.find_in(nb) if nb is not None else None
    if leak:  # whatever else happened, this is what must be said (and nothing saved)
        failure = _secret_failure(nb, leak, scanner)
    elif failure is None:
        nb.metadata.setdefault("fdp", {})["provenance"] = provenance
        page = {"title": template.title, "subtitle": _subtitle(job)}
        try:
            files = publish(
                job.folder, job.name, nb, page | {"provenance": prov.footer(provenance)}, scanner
            )
        except FdpError as exc:
            kind = "secret" if isinstance(exc, GovernanceError) else "publish"
            failure = Failure(kind, f"not published: {exc}", exc.exit_code)
        except OSError as exc:
            error = StoreError(f"not published: cannot write to {job.folder}: {exc}")
            failure = Failure("publish", str(error), error.exit_code)
        else:
            record |= {"status": "ok", "files": files, "provenance": provenance}
            write_record(job.folder, job.name, record)
            html = job.folder / f"{job.name}.html"
            return ReportResult(job.name, job.org, job.run, "ok", seconds, html=html)
    if failure.kind == "secret":
        _record_refusal(job, failure.reason)
    if nb is not None and not leak and failure.kind != "secret":
        nb.metadata.setdefault("fdp", {})["provenance"] = provenance
    else:
        nb = None  # a notebook that shows a key is never written, not even for debugging
    kept = withdraw(job.folder, job.name, nb)
    record |= {"status": "failed", "reason": failure.reason, "error": failure.as_dict()}
    record |= {"notebook": kept, "provenance": provenance}
    if scanner.find_in(record):  # a parameter or error message holds a key: record no detail
        keep = ("run", "org", "template", "started", "finished", "seconds", "status")
        reason = record["reason"]
        if scanner.find(reason):
            reason = "refused: its error message contains a secret key"
        record = {k: record[k] for k in keep} | {"params": {}, "notebook": kept, "reason": reason}
    write_record(job.folder, job.name, record)
    return ReportResult(
        job.name, job.org, job.run, "failed", seconds, record["reason"], failure.exit_code
    )


def _record_refusal(job: ReportJob, reason: str) -> None:
    """A report refused for showing a secret is a refusal like any other: recorded in the
    node's audit log, as the person or service account that ran it (the reason names what
    was shown, never its value)."""
    if job.federation is None:
        return
    from fdp_kernel.config import load_federation
    from fdp_kernel.governance.decision import Decision
    from fdp_kernel.governance.policy import identify
    from fdp_kernel.governance.recorder import Recorder

    fed = load_federation(job.federation)
    recorder = Recorder(fed, identify(os.environ), job.org, None)
    recorder.record(
        "report", Decision(False, "report:secret", reason), template=job.name, run=job.run
    )


def _now() -> str:
    return dt.datetime.now().astimezone().isoformat(timespec="seconds")


def _subtitle(job: ReportJob) -> str:
    return " · ".join(f"{k} {v}" for k, v in job.params.items() if k != "org")


# --- execution --------------------------------------------------------------------------


class _Launch:
    """What our engine needs from ``_execute``, and what it hands back."""

    def __init__(self, env: dict[str, str], cwd: str) -> None:
        self.env, self.cwd = env, cwd
        self.nb: nbformat.NotebookNode | None = None
        self.stderr = ""


def _register_engine() -> None:
    from jupyter_client.manager import AsyncKernelManager
    from papermill.clientwrap import PapermillNotebookClient
    from papermill.engines import NBClientEngine, papermill_engines

    class FdpEngine(NBClientEngine):
        @classmethod
        def execute_managed_notebook(
            cls, nb_man, kernel_name, start_timeout=60, execution_timeout=None, **kwargs
        ):
            launch: _Launch = kwargs["fdp_launch"]
            launch.nb = nb_man.nb  # kept even if execution raises
            with tempfile.TemporaryDirectory(prefix="fdp-kernel-") as tmp:
                km = AsyncKernelManager(kernel_name=kernel_name)
                if len(tmp) < 80:  # AF_UNIX paths are short; else fall back to TCP
                    km.transport, km.ip = "ipc", os.path.join(tmp, "kernel")
                km.shutdown_wait_time = 3.0
                client = PapermillNotebookClient(
                    nb_man,
                    km=km,
                    timeout=execution_timeout,
                    startup_timeout=start_timeout,
                    kernel_name=kernel_name,
                    log=_QUIET,
                )
                with open(os.path.join(tmp, "stderr"), "w+", encoding="utf-8") as log:
                    try:
                        return client.execute(
                            env=launch.env, cwd=launch.cwd, stdout=log, stderr=log
                        )
                    finally:
                        log.seek(0)
                        launch.stderr = log.read()[-2000:]

    global _ENGINE_READY
    papermill_engines.register(ENGINE, FdpEngine)
    _ENGINE_READY = True


def _execute(job: ReportJob) -> tuple[nbformat.NotebookNode | None, Failure | None]:
    import papermill

    if not _ENGINE_READY:
        _register_engine()
    cwd = REPO_ROOT if (REPO_ROOT / "fdp_kernel").is_dir() else job.template.parent
    launch = _Launch(job.env or kernel_env(job.federation), str(cwd))
    try:
        nb = papermill.execute_notebook(
            str(job.template),
            None,  # papermill writes nothing; we publish after the secret guard
            parameters=dict(job.params),
            engine_name=ENGINE,
            kernel_name=KERNEL,
            language="python",
            progress_bar=False,
            start_timeout=job.start_timeout,
            execution_timeout=job.timeout,
            fdp_launch=launch,
        )
        return nb, None
    except Exception as exc:  # a report failing is a result, not a crash
        return launch.nb, describe_failure(exc, launch.nb, job.timeout, launch.stderr)


def _cells(nb: nbformat.NotebookNode | None) -> list[Any]:
    """The executed cells without papermill's error markers (as its error indices count)."""
    if nb is None:
        return []
    return [c for c in nb.cells if _MARKER not in c.get("metadata", {}).get("tags", [])]


def _where(cells: list[Any], index: int | None) -> tuple[int | None, str, str]:
    """(template index, first line, "cell N (line)") of executed cell ``index``."""
    if index is None or not 0 <= index < len(cells):
        return None, "", "before the first cell"
    if "injected-parameters" in cells[index].metadata.get("tags", []):
        return None, "", "the injected-parameters cell"
    injected = sum(
        "injected-parameters" in c.get("metadata", {}).get("tags", []) for c in cells[:index]
    )
    lines = [ln.strip() for ln in cells[index].source.splitlines() if ln.strip()]
    first = prov.redact(lines[0])[:80] if lines else ""
    return index - injected, first, f"cell {index - injected} ({first})"


def _last_started(cells: list[Any]) -> int | None:
    """The cell running when execution stopped: the last one papermill gave a start time."""
    started = [i for i, c in enumerate(cells) if c.metadata.get("papermill", {}).get("start_time")]
    return started[-1] if started else None


def _secret_failure(nb: nbformat.NotebookNode, label: str, scanner: Any) -> Failure:
    cells = _cells(nb)
    hit = next((i for i, c in enumerate(cells) if scanner.find_in(c)), None)
    index, first, where = _where(cells, hit) if hit is not None else (None, "", "its metadata")
    fix = "never pass a key as a parameter" if "injected" in where else "remove what prints it"
    reason = f"refused: {where} shows {label}; nothing was saved ({fix})"
    return Failure("secret", reason, GovernanceError.exit_code, index, first, "SecretGuard")


def describe_failure(exc: Exception, nb, timeout: int, stderr: str) -> Failure:
    """A one-line reason naming the cell, from papermill's or nbclient's exception."""
    from nbclient.exceptions import CellTimeoutError, DeadKernelError
    from papermill.exceptions import PapermillExecutionError

    cells = _cells(nb)
    tail = " | ".join(ln for ln in stderr.strip().splitlines()[-3:] if ln.strip())
    if isinstance(exc, PapermillExecutionError):
        index, first, where = _where(cells, exc.cell_index)
        evalue = (str(exc.evalue).strip().splitlines() or [""])[0][:300]
        reason = f"{where}: {exc.ename}: {evalue}".rstrip(": ")
        return Failure("cell", reason, 1, index, first, exc.ename, evalue)
    index, first, where = _where(cells, _last_started(cells))
    if isinstance(exc, CellTimeoutError):
        evalue = f"no result after {timeout} s; the kernel was stopped"
        reason = f"{where}: timed out: {evalue}"
        return Failure("timeout", reason, 1, index, first, "Timeout", evalue)
    if isinstance(exc, DeadKernelError):
        evalue = "the kernel died (out of memory, or killed)" + (f": {tail}" if tail else "")
        return Failure("kernel", f"{where}: {evalue}", 1, index, first, "DeadKernelError", evalue)
    evalue = (str(exc).strip().splitlines() or [""])[0][:300] + (f" | {tail}" if tail else "")
    reason = f"the kernel could not run the template: {type(exc).__name__}: {evalue}"
    return Failure("kernel", reason, 1, index, first, type(exc).__name__, evalue)
