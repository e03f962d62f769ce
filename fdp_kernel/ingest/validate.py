"""Every column checked, vectorised: the SQL that turns source text into catalogue values.

Two stages, each one DuckDB query over a whole batch:

1. ``row_checks_sql``: source columns (text from CSV; typed from Parquet or FHIR) are
   trimmed, recoded by the mapping, converted to the catalogue type, and checked: type,
   required, code list, range, NHS number (Modulus 11), GTIN check digit, ODS and other code
   formats, dates in range (not before 1900, not after the as-of date unless the column is a
   booking in the future), dates in order within the row (birth before death, admission
   before discharge), and ``org_code`` being the node's own. Reasons collect in
   ``__row_reasons`` (null when the row passes).
2. ``reference_checks_sql``: values that name rows of another dataset (a patient's NHS
   number, a practice code, a product code, an RTT pathway) must exist in the node's store;
   an event must not precede the patient's date of birth. Reasons collect in
   ``__ref_reasons``; ``__defer`` marks rows whose only problem is a reference to a dataset
   this run is still loading (checked again when the run ends).

Messages name the column, quote the value (at most 40 characters) and say what is expected.
"""

from __future__ import annotations

import datetime as dt
from collections.abc import Iterable, Sequence
from dataclasses import dataclass

import pyarrow as pa

from fdp_kernel.catalog import CATALOG, Column, Dataset
from fdp_kernel.ingest.mapping import ColumnRule, Plan
from fdp_kernel.stores import quote, sql_type

EARLIEST = dt.date(1900, 1, 1)
FUTURE_YEARS = 10  # how far ahead a booking may be
# Bookings and planned dates: allowed after the as-of date (up to FUTURE_YEARS ahead).
FUTURE_ALLOWED = frozenset(
    {
        ("rtt_pathways", "tci_date"),
        ("rtt_pathways", "outpatient_future_appointment_date"),
        ("outpatient_appointments", "appointment_date"),
        ("organisations", "effective_to"),
    }
)
# (dataset, earlier, later): both present means earlier <= later.
DATE_ORDER = (
    ("patients", "date_of_birth", "date_of_death"),
    ("rtt_pathways", "rtt_start_date", "rtt_end_date"),
    ("inpatient_spells", "admission_date", "discharge_date"),
    ("inpatient_spells", "admission_date", "discharge_ready_date"),
    ("organisations", "effective_from", "effective_to"),
)
# Event dates that cannot precede the patient's date of birth (checked against patients).
EVENT_DATES = {
    "ltc_registers": ("diagnosis_date",),
    "rtt_pathways": ("referral_received_date", "rtt_start_date"),
    "outpatient_appointments": ("appointment_date",),
    "inpatient_spells": ("admission_date",),
    "vaccinations": ("vaccination_date",),
    "care_packages": ("referral_date",),
}
_ODS = "[A-Z0-9]{3}|[A-Z0-9]{5}|[A-Z][0-9]{5}"
_ICB = "Q[A-Z0-9]{2}"
_PRACTICE = "[A-Z][0-9]{5}"
# (dataset, column) -> (regular expression the whole value must match, what it is)
FORMATS = {
    ("organisations", "org_code"): (_ODS, "an ODS code"),
    ("organisations", "parent_icb"): (_ICB, "an ICB code (Q + 2)"),
    ("organisations", "region_code"): ("Y[0-9]{2}", "an NHS England region code (Y + 2)"),
    ("gp_practices", "practice_code"): (_PRACTICE, "a practice code (letter + 5 digits)"),
    ("gp_practices", "icb_code"): (_ICB, "an ICB code (Q + 2)"),
    ("gp_practices", "pcn_code"): ("U[0-9]{5}", "a PCN code (U + 5 digits)"),
    ("gp_practices", "lsoa_code"): ("E01[0-9]{6}", "an LSOA code (E01 + 6 digits)"),
    ("patients", "registered_practice"): (_PRACTICE, "a practice code (letter + 5 digits)"),
    ("patients", "lsoa_code"): ("E01[0-9]{6}", "an LSOA code (E01 + 6 digits)"),
    ("care_packages", "referring_org_code"): (_ODS, "an ODS code"),
}
_TRUE = ("true", "t", "yes", "y", "1")
_FALSE = ("false", "f", "no", "n", "0")
_INT_RANGES = {"int8": 127, "int16": 32767, "int32": 2147483647, "int64": 2**63 - 1}


@dataclass(frozen=True)
class Context:
    """What the checks depend on besides the data."""

    org: str
    as_of: dt.date
    deferrable: frozenset[str] = frozenset()  # datasets whose rows may still come this run


def lit(value: object) -> str:
    """A SQL literal for a string, number, date or None."""
    if value is None:
        return "NULL"
    if isinstance(value, bool):
        return "true" if value else "false"
    if isinstance(value, int | float):
        return repr(value)
    if isinstance(value, dt.date):
        return f"DATE '{value.isoformat()}'"
    return "'" + str(value).replace("'", "''") + "'"


def _in_list(values: Iterable[str]) -> str:
    return ", ".join(lit(v) for v in values)


def _shown(expr: str) -> str:
    """The value quoted for a message, cut to 40 characters."""
    return f"'''' || left(CAST({expr} AS VARCHAR), 40) || ''''"


def nhs_number_ok_sql(expr: str) -> str:
    """True when ``expr`` is 10 digits whose last is the Modulus 11 check digit.

    Weights 10..2 over digits 1-9; check = 11 - (sum mod 11), 11 -> 0, 10 -> never valid
    (taking (11 - sum mod 11) mod 11 maps 11 to 0 and 10 to 10, which no digit equals).
    The digits are taken arithmetically from the number, which is cheaper than substrings.
    """
    n = f"TRY_CAST({expr} AS UBIGINT)"
    digit = [f"({n} // {10 ** (9 - i)} % 10)" for i in range(10)]
    total = " + ".join(f"{d} * {10 - i}" for i, d in enumerate(digit[:9]))
    return (
        f"(CASE WHEN regexp_full_match({expr}, '[0-9]{{10}}') "
        f"THEN (11 - ({total}) % 11) % 11 = {digit[9]} ELSE false END)"
    )


def gtin_ok_sql(expr: str) -> str:
    """True for an 8, 12, 13 or 14 digit GTIN whose GS1 mod-10 check digit is right."""
    rev = f"reverse({expr})"
    terms = " + ".join(
        f"coalesce(TRY_CAST(substr({rev}, {i}, 1) AS INTEGER), 0) * {3 if i % 2 == 0 else 1}"
        for i in range(2, 15)
    )
    return (
        f"(CASE WHEN regexp_full_match({expr}, '[0-9]{{8}}|[0-9]{{12,14}}') "
        f"THEN (10 - ({terms}) % 10) % 10 = CAST(substr({rev}, 1, 1) AS INTEGER) ELSE false END)"
    )


def _msg(label: str, value: str | None, text: str, value2: str | None = None) -> str:
    """A reason as SQL: ``label 'value' text ['value2']``."""
    parts = [lit(label + " ")] if value is not None else [lit(label)]
    if value is not None:
        parts += [_shown(value), lit(text)]
    if value2 is not None:
        parts += [lit(" "), _shown(value2)]
    return " || ".join(parts)


def _text(
    rule: ColumnRule,
    source: str | None,
    src_type: pa.DataType | None,
    col: Column,
    nulls: Sequence[str],
) -> str:
    """The column as cleaned text (NULL when missing)."""
    if rule.constant is not None:
        return lit(rule.constant)
    if source is None:
        return "CAST(NULL AS VARCHAR)"
    string = src_type is None or pa.types.is_string(src_type)
    x = f"trim({source if string else f'CAST({source} AS VARCHAR)'})"
    if set(nulls) <= {""}:
        x = f"nullif({x}, '')"
    else:
        x = f"CASE WHEN {x} IN ({_in_list(nulls)}) OR {x} = '' THEN NULL ELSE {x} END"
    if rule.case:
        x = f"{rule.case}({x})"
    if col.name == "nhs_number":
        x = f"replace(replace({x}, ' ', ''), '-', '')"
    if rule.values:
        whens = " ".join(f"WHEN {lit(k)} THEN {lit(v)}" for k, v in rule.values.items())
        x = f"(CASE {x} {whens} ELSE {x} END)"
    return x


def _typed(
    t: str, col: Column, rule: ColumnRule, source: str | None, src_type: pa.DataType | None
) -> str:
    """The column converted to its catalogue type from its text ``t`` (NULL if it cannot)."""
    target = sql_type(col.dtype)
    direct = (
        source is not None
        and rule.constant is None
        and src_type is not None
        and not pa.types.is_string(src_type)
        and not rule.values
        and not rule.case
    )
    if direct:  # typed source (Parquet, FHIR): convert the value, not its text
        if pa.types.is_floating(src_type) and col.dtype.startswith("int"):
            whole = f"{source} = round({source})"
            return f"(CASE WHEN {whole} THEN TRY_CAST({source} AS {target}) END)"
        return f"TRY_CAST({source} AS {target})"
    if col.dtype == "string":
        return t
    if col.dtype in ("date", "timestamp"):
        if rule.format:
            value = f"TRY_STRPTIME({t}, {lit(rule.format)})"
            return f"CAST({value} AS DATE)" if col.dtype == "date" else value
        return f"TRY_CAST({t} AS {target})"
    if col.dtype.startswith("int"):
        digits = f"regexp_full_match({t}, '[+-]?[0-9]{{1,19}}')"
        return f"(CASE WHEN {digits} THEN TRY_CAST({t} AS {target}) END)"
    if col.dtype == "float64":
        number = f"TRY_CAST({t} AS DOUBLE)"
        return f"(CASE WHEN isfinite({number}) THEN {number} END)"
    if col.dtype == "boolean":
        return (
            f"(CASE WHEN lower({t}) IN ({_in_list(_TRUE)}) THEN true "
            f"WHEN lower({t}) IN ({_in_list(_FALSE)}) THEN false END)"
        )
    raise ValueError(f"no conversion for catalogue dtype {col.dtype!r}")


def _expected(col: Column, rule: ColumnRule) -> str:
    if col.dtype == "date":
        return f"a date in format {rule.format}" if rule.format else "a date (YYYY-MM-DD)"
    if col.dtype == "timestamp":
        return f"a timestamp in format {rule.format}" if rule.format else "a timestamp"
    if col.dtype.startswith("int"):
        return f"a whole number (at most {_INT_RANGES[col.dtype]})"
    return {"float64": "a number", "boolean": "true or false (yes/no, y/n, 1/0)"}[col.dtype]


def _checks(ds: Dataset, col: Column, rule: ColumnRule, t: str, v: str, ctx: Context) -> list:
    """(condition, message) pairs for one column: text ``t``, typed value ``v``."""
    renamed = rule.source and rule.source != col.name
    label = f"{col.name} (from {rule.source})" if renamed else col.name
    out: list[tuple[str, str]] = []
    if col.dtype != "string":
        out.append(
            (f"{t} IS NOT NULL AND {v} IS NULL", _msg(label, t, f" is not {_expected(col, rule)}"))
        )
    if not col.nullable:
        out.append((f"{t} IS NULL", _msg(f"{label} is missing (required)", None, "")))
    if col.codes:
        listed = f"CAST({v} AS VARCHAR) NOT IN ({_in_list(col.codes)})"
        hint = f" is not in its code list (see `fdp catalog {ds.name}`)"
        out.append((f"{v} IS NOT NULL AND {listed}", _msg(label, v, hint)))
    if col.minimum is not None:
        out.append((f"{v} < {col.minimum}", _msg(label, v, f" is below {col.minimum:g}")))
    if col.maximum is not None:
        out.append((f"{v} > {col.maximum}", _msg(label, v, f" is above {col.maximum:g}")))
    if col.name == "nhs_number":
        what = " is not a valid NHS number (10 digits, Modulus 11 check digit)"
        out.append((f"{v} IS NOT NULL AND NOT {nhs_number_ok_sql(v)}", _msg(label, v, what)))
    if col.name == "gtin":
        what = " is not a GTIN with a valid check digit"
        out.append((f"{v} IS NOT NULL AND NOT {gtin_ok_sql(v)}", _msg(label, v, what)))
    if (ds.name, col.name) in FORMATS:
        pattern, what = FORMATS[(ds.name, col.name)]
        bad = f"{v} IS NOT NULL AND NOT regexp_full_match({v}, {lit(pattern)})"
        out.append((bad, _msg(label, v, f" is not {what}")))
    if col.name == "org_code" and ds.org_column and col.references:
        what = f" is not this node ({ctx.org}): a node loads only its own records"
        out.append((f"{v} IS NOT NULL AND {v} <> {lit(ctx.org)}", _msg(label, v, what)))
    if col.dtype in ("date", "timestamp"):
        future = (ds.name, col.name) in FUTURE_ALLOWED
        latest = ctx.as_of.replace(year=ctx.as_of.year + FUTURE_YEARS) if future else ctx.as_of
        when = f"more than {FUTURE_YEARS} years after" if future else "after"
        out.append((f"{v} < {lit(EARLIEST)}", _msg(label, v, " is before 1900")))
        late = f" is {when} the as-of date {ctx.as_of}"
        out.append((f"{v} > {lit(latest)}", _msg(label, v, late)))
    return out


def _reasons(checks: Sequence[tuple[str, str]]) -> str:
    """The failed checks' messages joined by '; ', or NULL; messages are only built for the
    rows that fail something (most rows pass, and strings are the costly part)."""
    if not checks:
        return "CAST(NULL AS VARCHAR)"
    failed = " OR ".join(f"({cond})" for cond, _ in checks)
    parts = ", ".join(f"CASE WHEN {cond} THEN {msg} END" for cond, msg in checks)
    return f"CASE WHEN {failed} THEN concat_ws('; ', {parts}) END"


def row_checks_sql(
    plan: Plan,
    sources: dict[str, tuple[str, pa.DataType]],
    ctx: Context,
    null_values: Sequence[str] = ("",),
    relation: str = "__src",
    *,
    with_reasons: bool = True,
) -> str:
    """SELECT __i, __line, the catalogue columns typed, and ``__row_reasons`` FROM relation.

    ``sources`` maps each source column name to (its SQL name in ``relation``, Arrow type).
    Without ``with_reasons`` only the conversion is done (``__row_reasons`` is null): the
    loader's second pass, which writes the rows the first pass found good.
    """
    ds = plan.dataset
    texts, typed, checks = [], [], []
    for k, col in enumerate(ds.columns):
        rule = plan.rules.get(col.name, ColumnRule())
        source, src_type = sources[rule.source] if rule.source else (None, None)
        texts.append(f"{_text(rule, source, src_type, col, null_values)} AS t{k}")
        if source is not None and src_type is not None and not pa.types.is_string(src_type):
            texts.append(f"{source} AS s{k}")  # a typed value: converted as it is
            source = f"s{k}"
        typed.append(_typed(f"t{k}", col, rule, source, src_type))
        checks += _checks(ds, col, rule, f"t{k}", f"v{k}", ctx)
    index = {c.name: k for k, c in enumerate(ds.columns)}
    for name, earlier, later in DATE_ORDER:
        if name == ds.name:
            a, b = f"v{index[earlier]}", f"v{index[later]}"
            bad = f"{a} IS NOT NULL AND {b} IS NOT NULL AND {b} < {a}"
            checks.append((bad, _msg(later, b, f" is before {earlier}", a)))
    inner = f"SELECT __i, __line, {', '.join(texts)} FROM {relation}"
    t_cols = ", ".join(t.rsplit(" AS ", 1)[1] for t in texts)
    v_cols = ", ".join(f"{expr} AS v{k}" for k, expr in enumerate(typed))
    middle = f"SELECT __i, __line, {t_cols}, {v_cols} FROM ({inner})"
    outs = ", ".join(f"v{k} AS {quote(c.name)}" for k, c in enumerate(ds.columns))
    reasons = _reasons(checks) if with_reasons else "CAST(NULL AS VARCHAR)"
    return f"SELECT __i, __line, {outs}, {reasons} AS __row_reasons FROM ({middle})"


@dataclass(frozen=True)
class Reference:
    column: str
    dataset: str  # the referenced dataset
    keys: tuple[tuple[str, str], ...]  # (our column, their column) pairs to join on
    unique: bool  # the keys are the referenced dataset's primary key


def references(ds: Dataset) -> list[Reference]:
    """The references of ``ds`` that ingest checks (not org_code, which must be the node)."""
    out = []
    for col in ds.columns:
        if not col.references or (col.name == "org_code" and ds.org_column):
            continue
        ref_name, ref_col = col.references.split(".")
        if ref_name == ds.name and ref_col == col.name:
            continue  # patients.nhs_number "references" itself
        ref = CATALOG[ref_name]
        if ref.primary_key == ("org_code", ref_col) and ds.org_column:
            keys = (("org_code", "org_code"), (col.name, ref_col))
            out.append(Reference(col.name, ref_name, keys, True))
        else:
            unique = ref.primary_key == (ref_col,)
            out.append(Reference(col.name, ref_name, ((col.name, ref_col),), unique))
    return out


def reference_checks_sql(ds: Dataset, relation: str, ctx: Context, *, final: bool) -> str:
    """SELECT relation.*, ``__ref_reasons`` and ``__defer`` FROM ``relation`` (alias ``r``).

    ``__defer`` is true when every failing check is a missing row of a dataset this run may
    still load (never when ``final``: the run is over and what is missing stays missing).
    """
    joins: list[str] = []
    checks: list[tuple[str, str, bool]] = []  # condition, message, deferrable
    for j, ref in enumerate(references(ds)):
        alias = f"__r{j}"
        cols = [f"{quote(theirs)} AS k{i}" for i, (_, theirs) in enumerate(ref.keys)]
        dob = ref.dataset == "patients" and ds.name in EVENT_DATES
        if dob:
            cols.append("date_of_birth AS dob")
        distinct = "" if ref.unique else "DISTINCT "
        select = f"SELECT {distinct}{', '.join(cols)} FROM {quote(ref.dataset)}"
        on = " AND ".join(f"r.{quote(ours)} = {alias}.k{i}" for i, (ours, _) in enumerate(ref.keys))
        joins.append(f"LEFT JOIN ({select}) {alias} ON {on}")
        value = f"r.{quote(ref.column)}"
        missing = f" is not in this node's {ref.dataset} (load {ref.dataset} first)"
        checks.append(
            (
                f"({value} IS NOT NULL AND {alias}.k0 IS NULL)",
                _msg(ref.column, value, missing),
                ref.dataset in ctx.deferrable and not final,
            )
        )
        for event in EVENT_DATES.get(ds.name, ()) if dob else ():
            e = f"r.{quote(event)}"
            before = " is before the patient's date of birth"
            checks.append((f"{e} < {alias}.dob", _msg(event, e, before, f"{alias}.dob"), False))
    deferrable = [c for c, _, d in checks if d]
    hard = [c for c, _, d in checks if not d]
    defer = "false"
    if deferrable:
        hard_failed = " OR ".join(f"coalesce({c}, false)" for c in hard) or "false"
        defer = f"({' OR '.join(deferrable)}) AND NOT ({hard_failed})"
    reasons = _reasons([(c, m) for c, m, _ in checks])
    return (
        f"SELECT r.*, {reasons} AS __ref_reasons, ({defer}) AS __defer "
        f"FROM {relation} r {' '.join(joins)}"
    )
