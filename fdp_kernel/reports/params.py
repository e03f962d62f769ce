"""Report parameters: declared in a template's ``parameters`` cell, validated before any kernel.

The convention (one parameter per line, parsed with ``ast`` and ``tokenize``, never executed)::

    org: str = "RSA"  # ODS code of the trust or ICB to report on
    as_of: str = "2026-10-31"  # Reference date (a month end) [type: date]
    months: int = 12  # Months of history in trend charts [allowed: 3, 6, 12, 24]

* ``name: TYPE = DEFAULT`` with TYPE one of ``str``, ``int``, ``float``, ``bool``; a date is a
  ``str`` with ``[type: date]`` in the comment and an ISO ``YYYY-MM-DD`` value (it reaches the
  notebook as that string, so the cell also runs by hand in JupyterLab).
* The trailing comment is required: a one-line description, then optional tags
  ``[type: date]`` and ``[allowed: v1, v2, ...]`` (strings bare or quoted).
* The default is a literal of the declared type and, with ``[allowed: ...]``, one of them.
* Nothing else may stand in the cell but comments and blank lines, so no parameter is
  untyped (papermill #55) and none is unknown (papermill #818 accepts unknown names).
* Names that look like secrets (password, token, secret, key, ...) are refused: papermill
  writes parameters into the saved notebook (papermill #706).
"""

from __future__ import annotations

import ast
import datetime as dt
import hashlib
import io
import math
import re
import tokenize
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import nbformat

from fdp_kernel.errors import ConfigError, UsageError

TYPES = ("str", "int", "float", "bool", "date")
_TAG = re.compile(r"\[\s*(\w+)\s*:\s*([^\]]*)\]")
_SECRET_WORDS = ("password", "passwd", "secret", "token", "credential", "apikey", "privkey")
_SECRET_PARTS = {"key", "keys", "pwd", "pass", "auth"}
_TRUE, _FALSE = {"true", "yes", "1", "on"}, {"false", "no", "0", "off"}

Value = str | int | float | bool


@dataclass(frozen=True)
class Param:
    name: str
    type: str  # one of TYPES
    default: Value
    description: str
    allowed: tuple[Value, ...] = ()

    def describe(self) -> str:
        """``name (type, default X; one of a, b)``: how the parameter is shown in errors."""
        extra = f"; one of {', '.join(map(str, self.allowed))}" if self.allowed else ""
        return f"{self.name} ({self.type}, default {self.default!r}{extra})"


@dataclass(frozen=True)
class Template:
    name: str
    path: Path
    title: str
    params: dict[str, Param] = field(default_factory=dict)
    sha256: str = ""
    org_types: tuple[str, ...] = ()  # notebook metadata fdp.org_types: who it is for

    def usage(self) -> str:
        """The valid parameters, one per line, for error messages."""
        lines = [f"  {p.describe()}: {p.description}" for p in self.params.values()]
        return f"parameters of template {self.name}:\n" + "\n".join(lines)


def looks_secret(name: str) -> bool:
    low = name.lower()
    parts = set(re.split(r"[_\W\d]+", low))
    return any(w in low for w in _SECRET_WORDS) or bool(parts & _SECRET_PARTS)


def parse_parameters(source: str, *, where: str = "parameters cell") -> dict[str, Param]:
    """The declarations in a parameters cell's source (raises ``ConfigError`` naming the line)."""
    try:
        tree = ast.parse(source)
    except SyntaxError as exc:
        raise ConfigError(f"{where}: line {exc.lineno}: not valid Python ({exc.msg})") from None
    comments = {
        tok.start[0]: tok.string.lstrip("#").strip()
        for tok in tokenize.generate_tokens(io.StringIO(source).readline)
        if tok.type == tokenize.COMMENT
    }
    params: dict[str, Param] = {}
    for node in tree.body:
        param = _declaration(node, comments, f"{where}: line {node.lineno}")
        if param.name in params:
            raise ConfigError(f"{where}: line {node.lineno}: {param.name} is declared twice")
        params[param.name] = param
    return params


def _declaration(node: ast.stmt, comments: dict[int, str], where: str) -> Param:
    example = "write e.g. `months: int = 12  # Months of history [allowed: 6, 12]`"
    if not (
        isinstance(node, ast.AnnAssign)
        and isinstance(node.target, ast.Name)
        and node.value is not None
    ):
        raise ConfigError(f"{where}: only annotated parameter assignments belong here; {example}")
    name = node.target.id
    if name.startswith("_") or looks_secret(name):
        raise ConfigError(
            f"{where}: {name!r} is not allowed as a parameter name (private, or looks like a "
            "secret: papermill saves parameters in the notebook); read secrets from key files"
        )
    annotation = node.annotation.id if isinstance(node.annotation, ast.Name) else None
    if annotation not in ("str", "int", "float", "bool"):
        raise ConfigError(
            f"{where}: {name}: the type must be str, int, float or bool (a date is "
            f"`str` with [type: date]); {example}"
        )
    comment = comments.get(node.end_lineno or node.lineno) or comments.get(node.lineno, "")
    tags = {k.lower(): v.strip() for k, v in _TAG.findall(comment)}
    description = _TAG.sub("", comment).strip()
    if not description:
        raise ConfigError(f"{where}: {name} has no description; {example}")
    unknown = set(tags) - {"type", "allowed"}
    if unknown:
        raise ConfigError(f"{where}: {name}: unknown tag(s) {sorted(unknown)}; use type, allowed")
    kind = annotation
    if "type" in tags:
        if tags["type"] != "date" or annotation != "str":
            raise ConfigError(f"{where}: {name}: [type: ...] only takes `date`, on a str")
        kind = "date"
    try:
        literal = ast.literal_eval(node.value)
    except ValueError:
        raise ConfigError(f"{where}: {name}: the default must be a literal value") from None
    param = Param(name, kind, "", description)
    listed = [v.strip().strip("'\"") for v in tags.get("allowed", "").split(",") if v.strip()]
    try:
        default = coerce(param, literal, strict=True)
        allowed = tuple(coerce(param, v) for v in listed)
    except UsageError as exc:
        raise ConfigError(f"{where}: {exc}") from None
    if "allowed" in tags and not allowed:
        raise ConfigError(f"{where}: {name}: [allowed: ...] lists no values")
    if allowed and default not in allowed:
        raise ConfigError(f"{where}: {name}: default {default!r} is not among {list(allowed)}")
    return Param(name, kind, default, description, allowed)


def coerce(param: Param, value: Any, *, strict: bool = False) -> Value:
    """``value`` (command-line text, YAML value or literal) as the parameter's type.

    ``strict`` (template defaults) refuses text where a number or bool is declared.
    """
    bad = UsageError(
        f"parameter {param.name}: {value!r} is not a valid {param.type}"
        + (" (YYYY-MM-DD)" if param.type == "date" else "")
    )
    if isinstance(value, str) and strict and param.type in ("int", "float", "bool"):
        raise bad
    if param.type == "str":
        if isinstance(value, bool | int | float) and not strict:
            return str(value)
        if not isinstance(value, str):
            raise bad
        return value
    if param.type == "date":
        if isinstance(value, dt.date) and not isinstance(value, dt.datetime) and not strict:
            return value.isoformat()
        if not isinstance(value, str) or not re.fullmatch(r"\d{4}-\d{2}-\d{2}", value.strip()):
            raise bad
        try:
            return dt.date.fromisoformat(value.strip()).isoformat()
        except ValueError:
            raise bad from None
    if param.type == "bool":
        if isinstance(value, bool):
            return value
        if isinstance(value, str) and value.strip().lower() in _TRUE | _FALSE:
            return value.strip().lower() in _TRUE
        raise bad
    if isinstance(value, bool):
        raise bad
    if param.type == "int":
        if isinstance(value, int):
            return value
        if isinstance(value, str) and re.fullmatch(r"[+-]?\d+", value.strip().replace("_", "")):
            return int(value.strip().replace("_", ""))
        raise bad
    try:  # float
        number = float(value) if isinstance(value, str | int | float) else math.nan
    except ValueError:
        number = math.nan
    if not math.isfinite(number):
        raise bad
    return number


def load_template(path: Path) -> Template:
    """Read a template notebook and its parameter declarations (``ConfigError`` if invalid)."""
    path = Path(path)
    try:
        raw = path.read_bytes()
        nb = nbformat.reads(raw.decode("utf-8"), as_version=4)
    except (OSError, ValueError) as exc:
        raise ConfigError(f"{path}: not a readable notebook ({exc})") from None
    cells = [c for c in nb.cells if "parameters" in c.get("metadata", {}).get("tags", [])]
    if len(cells) != 1:
        raise ConfigError(
            f"{path}: needs exactly one code cell tagged `parameters` (found {len(cells)})"
        )
    params = parse_parameters(cells[0].source, where=f"{path.name} parameters cell")
    meta = nb.metadata.get("fdp", {})
    types = tuple(meta.get("org_types", ()))
    digest = hashlib.sha256(raw).hexdigest()
    return Template(path.stem, path, _title(nb, path.stem), params, digest, types)


def _title(nb: nbformat.NotebookNode, fallback: str) -> str:
    if isinstance(title := nb.metadata.get("fdp", {}).get("title"), str) and title.strip():
        return title.strip()
    for cell in nb.cells:
        if cell.cell_type == "markdown":
            for line in cell.source.splitlines():
                if line.startswith("# "):
                    return line[2:].strip()
    return fallback.replace("_", " ").capitalize()


def find_templates(folder: Path) -> dict[str, Path]:
    """Template name -> notebook path, for every ``*.ipynb`` directly in ``folder``."""
    folder = Path(folder)
    if not folder.is_dir():
        raise ConfigError(f"no template folder {folder}; pass --templates DIR")
    return {p.stem: p for p in sorted(folder.glob("*.ipynb")) if not p.name.startswith(".")}


def resolve(
    template: Template, org: str | None, given: Mapping[str, Any] | Iterable[str] = ()
) -> dict[str, Value]:
    """Every parameter's value: defaults, then ``given`` (``{k: v}`` or ``["k=v", ...]``), then org.

    Raises ``UsageError`` naming the problem and listing the valid parameters.
    """
    pairs = list(given.items()) if isinstance(given, Mapping) else [_split(t) for t in given]
    values = {name: p.default for name, p in template.params.items()}
    seen: set[str] = set()
    for name, value in pairs:
        if looks_secret(name):
            raise UsageError(
                f"parameter {name!r} looks like a secret; parameters are saved in the report "
                "notebook, so secrets must come from key files, never parameters"
            )
        if name not in template.params:
            raise UsageError(f"unknown parameter {name!r}.\n{template.usage()}")
        if name in seen:
            raise UsageError(f"parameter {name} is given twice")
        seen.add(name)
        param = template.params[name]
        try:
            values[name] = coerce(param, value)
        except UsageError as exc:
            raise UsageError(f"{exc}.\n{template.usage()}") from None
        if param.allowed and values[name] not in param.allowed:
            raise UsageError(
                f"parameter {name}: {values[name]!r} is not allowed; use one of "
                f"{', '.join(map(str, param.allowed))}.\n{template.usage()}"
            )
    if "org" not in template.params:
        raise UsageError(f"template {template.name} declares no `org: str` parameter")
    if org is not None:
        if "org" in seen and values["org"] != org:
            raise UsageError("give the organisation once: --org, not also --param org=...")
        values["org"] = coerce(template.params["org"], org.strip().upper())
    code = str(values["org"])
    if not re.fullmatch(r"[A-Z0-9]{3,6}", code):
        raise UsageError(f"organisation {code!r} is not an ODS code (e.g. RSA, QSY, Y90001)")
    allowed = template.params["org"].allowed
    if allowed and code not in allowed:
        raise UsageError(
            f"organisation {code} is not allowed; use one of {', '.join(map(str, allowed))}"
        )
    return values


def _split(text: str) -> tuple[str, str]:
    name, sep, value = text.partition("=")
    if not sep or not name.strip():
        raise UsageError(f"--param {text!r}: write NAME=VALUE, e.g. --param months=12")
    return name.strip(), value
