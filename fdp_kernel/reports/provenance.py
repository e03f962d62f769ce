"""What a report records about how it was made, and the guard that keeps secrets out of it.

In a template, the last cell shows the workspace's provenance::

    from fdp_kernel.reports.provenance import show
    show(ws)

``show`` displays ``ws.provenance()`` (user, org, purpose, agreements, datasets, data and
policy fingerprints, fdp version) as a ``application/vnd.fdp.provenance+json`` output plus a
small HTML block; the runner reads it back from the executed notebook (``extract``).

The secret guard: every node key of the federation, every key derived from it for a purpose
(label ``purpose:<id>``) and every agreement key (label ``agreement:<id>``) is looked for in
the executed notebook and the HTML page before anything is written. Hex is matched on any
16-digit window (64 bits), so half a key is caught too; raw keys also as base64 and Python
``bytes`` repr. A report that shows one is refused.
"""

from __future__ import annotations

import base64
import datetime as dt
import html
import json
import re
import subprocess
from collections.abc import Iterator, Mapping
from dataclasses import dataclass
from pathlib import Path
from typing import Any

MIMETYPE = "application/vnd.fdp.provenance+json"
WORKSPACE_KEYS = (
    "mode",  # embedded (in-process, not a security boundary) or node service
    "user",
    "org",
    "purpose",
    "agreements",
    "datasets",
    "data_fingerprint",
    "policy_fingerprint",
    "fdp_version",
)
_WINDOW = 16  # hex digits: a 64-bit piece of a key counts as a leak
_HEX_RUN = re.compile(rf"[0-9a-fA-F]{{{_WINDOW},}}")


def show(ws: Any) -> None:
    """Display a workspace's provenance (``ws.provenance()``, or a mapping) in the notebook."""
    from IPython.display import display

    raw = ws.provenance() if hasattr(ws, "provenance") else dict(ws)
    data = json.loads(json.dumps(raw, default=str))
    rows = "".join(
        f"<tr><th style='text-align:left;padding-right:1em'>{html.escape(str(k))}</th>"
        f"<td>{html.escape(_text(v))}</td></tr>"
        for k, v in data.items()
    )
    block = (
        "<details class='fdp-provenance'><summary>How these figures were made</summary>"
        f"<table>{rows}</table></details>"
    )
    plain = "\n".join(f"{k}: {_text(v)}" for k, v in data.items())
    display({MIMETYPE: data, "text/html": block, "text/plain": plain}, raw=True)


def _text(value: Any) -> str:
    if isinstance(value, list | tuple):
        return ", ".join(map(str, value)) or "none"
    return "none" if value is None else str(value)


def extract(nb: Mapping[str, Any]) -> dict[str, Any] | None:
    """The last provenance a notebook's outputs show (``None`` when the template shows none)."""
    found = None
    for cell in nb.get("cells", []):
        for out in cell.get("outputs", []) or []:
            data = out.get("data") or {}
            if MIMETYPE in data:
                value = data[MIMETYPE]
                found = json.loads(value) if isinstance(value, str) else dict(value)
    return found


def report_provenance(
    record: Mapping[str, Any], template_sha256: str, git: str, workspace: dict[str, Any] | None
) -> dict[str, Any]:
    """What the runner records: template and hash, parameters, versions, times, workspace."""
    from fdp_kernel.version import __version__

    return {
        "organisation": record["org"],
        "template": record["template"],
        "template_sha256": template_sha256,
        "parameters": dict(record["params"]),
        "run": record["run"],
        "run_at": record["started"],
        "finished_at": record["finished"],
        "seconds": record["seconds"],
        "fdp_version": __version__,
        "git_revision": git,
        "workspace": workspace,
    }


def footer(provenance: Mapping[str, Any]) -> dict[str, Any]:
    """Provenance for the page footer: times as datetimes, the workspace's fields flattened."""
    shown: dict[str, Any] = {}
    for key, value in provenance.items():
        if key in ("run_at", "finished_at"):
            value = dt.datetime.fromisoformat(value)
        if key != "workspace":
            shown[key] = value
    ws = provenance.get("workspace")
    if not ws:
        shown["workspace"] = "not reported (the template does not call provenance.show)"
        return shown
    for key in WORKSPACE_KEYS:
        if (
            key in ws
            and key != "fdp_version"
            and not (key == "org" and ws[key] == shown["organisation"])
        ):
            shown[key] = _text(ws[key]) if isinstance(ws[key], list) else ws[key]
    return shown


def git_revision(root: Path) -> str:
    """``git rev-parse --short HEAD`` of ``root`` plus ``-dirty``; ``unknown`` outside git.

    Read-only: ``--no-optional-locks`` stops ``git status`` from refreshing the index.
    """
    if not (Path(root) / ".git").exists():
        return "unknown"
    base = ["git", "--no-optional-locks", "-C", str(root)]
    try:
        rev = subprocess.run(
            [*base, "rev-parse", "--short", "HEAD"], capture_output=True, text=True, timeout=20
        )
        if rev.returncode != 0 or not rev.stdout.strip():
            return "unknown"
        status = subprocess.run(
            [*base, "status", "--porcelain"], capture_output=True, text=True, timeout=20
        )
    except (OSError, subprocess.SubprocessError):
        return "unknown"
    dirty = status.returncode != 0 or bool(status.stdout.strip())
    return rev.stdout.strip() + ("-dirty" if dirty else "")


# --- the secret guard ---------------------------------------------------------------------


@dataclass(frozen=True)
class Secret:
    label: str  # what it is, safe to show: "the key of node RSA", "key purpose:x of node RSA"
    hex: str  # lower-case hex
    raw: bool = False  # a raw key (also looked for as base64 and bytes repr)


class SecretScanner:
    """Finds any of ``secrets`` in text; ``find`` returns the label of the first found."""

    def __init__(self, secrets: list[Secret]) -> None:
        self.count = len(secrets)
        self._windows: dict[str, str] = {}
        self._exact: list[tuple[str, str]] = []
        for s in secrets:
            for i in range(len(s.hex) - _WINDOW + 1):
                self._windows.setdefault(s.hex[i : i + _WINDOW], s.label)
            if s.raw:
                key = bytes.fromhex(s.hex)
                self._exact.append((base64.b64encode(key).decode().rstrip("="), s.label))
                self._exact.append((repr(key)[2:-1], s.label))

    def find(self, text: str) -> str | None:
        if not self.count:
            return None
        for m in _HEX_RUN.finditer(text):
            run = m.group().lower()
            for i in range(len(run) - _WINDOW + 1):
                if label := self._windows.get(run[i : i + _WINDOW]):
                    return label
        for needle, label in self._exact:
            if needle in text:
                return label
        return None

    def find_in(self, obj: Any) -> str | None:
        """Look through every string (keys and values) of a JSON-like object."""
        return self.find("\n".join(_strings(obj)))


def redact(text: str) -> str:
    """``text`` with every long hex run replaced, to show a line that may hold a key."""
    return _HEX_RUN.sub("<hex>", text)


def _strings(obj: Any) -> Iterator[str]:
    if isinstance(obj, str):
        yield obj
    elif isinstance(obj, Mapping):
        for k, v in obj.items():
            yield str(k)
            yield from _strings(v)
    elif isinstance(obj, list | tuple):
        for v in obj:
            yield from _strings(v)
    elif obj is not None:
        yield str(obj)


def federation_secrets(federation: Path | None) -> list[Secret]:
    """Every key of the federation that must never appear in a report (see the module doc)."""
    if federation is None:
        return []
    from fdp_kernel.config import load_federation
    from fdp_kernel.governance.keys import derive

    fed = load_federation(federation)
    found: list[Secret] = []
    for org in fed.organisations.values():
        key = _key_bytes(org.key, org.code)
        if key is None:
            continue
        found.append(Secret(f"the pseudonymisation key of node {org.code}", key.hex(), raw=True))
        for purpose in fed.purposes:
            derived = derive(key, f"purpose:{purpose}")
            label = f"the derived key purpose:{purpose} of node {org.code}"
            found += [Secret(label, derived.inner), Secret(label, derived.outer)]
    for agreement in fed.agreements.values():
        key = (
            _key_bytes(Path(agreement.key), f"agreement {agreement.id}") if agreement.key else None
        )
        if key is None:
            continue
        found.append(Secret(f"the linkage key of agreement {agreement.id}", key.hex(), raw=True))
        derived = derive(key, f"agreement:{agreement.id}")
        label = f"the derived key agreement:{agreement.id}"
        found += [Secret(label, derived.inner), Secret(label, derived.outer)]
    return found


def _key_bytes(path: Path | None, owner: str) -> bytes | None:
    """The key as ``read_key`` reads it; a key it refuses (mode) is still looked for."""
    from fdp_kernel.errors import GovernanceError
    from fdp_kernel.governance.keys import read_key

    if path is None or not Path(path).exists():
        return None  # no key on this machine: nothing that could leak
    try:
        return read_key(path, owner=owner)
    except GovernanceError:
        try:
            return bytes.fromhex(Path(path).read_text().strip()) or None
        except (OSError, ValueError):
            return None
