"""Charts for reports and notebooks: the NHS identity theme, offline rendering and helpers.

Helpers take a pandas DataFrame of *already released* figures (suppressed cells are ``<NA>``)
and return a chart titled above, captioned below with the source and a suppression note.
Suppressed values are never plotted (bars and bands dropped, lines broken at the gap); the
caption counts them. In a report: ``viz.use_nhs_theme(); viz.use_offline_renderer()``, then
e.g. ``viz.bar(df, "trust", "within_18_weeks", title=..., source=..., target=0.92,
target_label="92% standard", value_format=".0%", breach="below")``.

Helpers return ``alt.VConcatChart``: Vega-Lite keeps one title per view and drops layers'
titles, so the caption is the bottom title of the (layered) plot and the chart title sits on
a one-item concatenation around it. Set the plot size with ``size=(width, height)``.
"""

from __future__ import annotations

import datetime as dt
import importlib.util
import textwrap
from collections.abc import Mapping, Sequence
from typing import Any, Literal

import altair as alt
import pandas as pd
from pandas.api import types as ptypes

from fdp_kernel.errors import UsageError

# NHS identity colours (NHS England brand guidelines). Emergency red is kept for breaches.
NHS_BLUE, DARK_BLUE, BRIGHT_BLUE, LIGHT_BLUE = "#005EB8", "#003087", "#0072CE", "#41B6E6"
AQUA_GREEN, DARK_GREEN, WARM_YELLOW, ORANGE = "#00A499", "#006747", "#FFB81C", "#ED8B00"
DARK_PINK, PURPLE, EMERGENCY_RED = "#7C2855", "#330072", "#DA291C"
DARK_GREY, MID_GREY, PALE_GREY = "#425563", "#768692", "#E8EDEE"

# Categorical palette: NHS identity colours only, ordered for colour-blind readers. Method:
# start from NHS Blue, then repeatedly add the identity colour that maximises the smallest
# CIELAB distance (dE76) between any two colours, taken over normal vision and simulated
# protanopia, deuteranopia and tritanopia (Machado, Oliveira & Fernandes 2009, severity 1.0).
# Candidates: contrast >= 2.5:1 on white; greys (text, "other"), reds (breaches) excluded.
# Smallest dE over the four visions: first 2 colours 88, first 4 25, first 5 24, all 6 12.6.
# Same idea as Okabe & Ito's palette, in NHS colours. Orange is 2.5:1 on white (WCAG asks
# 3:1 for graphics), so label series directly where it matters; beyond 6 series, facet.
PALETTE: tuple[str, ...] = (NHS_BLUE, ORANGE, DARK_PINK, AQUA_GREEN, PURPLE, DARK_GREEN)

# Frutiger is the NHS typeface; Arial is the NHS-approved substitute for digital use.
# Liberation Sans (Debian fonts-liberation) has Arial's metrics, so layouts hold on Linux.
FONT = "Arial, 'Liberation Sans', Helvetica, sans-serif"
WIDTH, HEIGHT, BAR_STEP = 560, 280, 22
Size = tuple[int, int]
_CAT_AXIS = {"labelAngle": 0, "labelLimit": 180}

Chart = alt.Chart | alt.LayerChart
_BREACH = ("below", "above")


def nhs_theme() -> alt.theme.ThemeConfig:
    """The ``nhs`` Altair theme: identity colours, Arial, left titles, light gridlines."""
    text = dict(labelColor=DARK_GREY, titleColor=DARK_GREY, labelFont=FONT, titleFont=FONT)
    title = dict(anchor="start", color=DARK_BLUE, fontSize=16, fontWeight="bold", offset=12)
    grid = dict(domainColor=MID_GREY, tickColor=MID_GREY, gridColor=PALE_GREY, gridOpacity=1)
    sizes = dict(labelFontSize=11, titleFontSize=12, titleFontWeight="normal")
    config = {
        "background": "white",
        "font": FONT,
        "padding": 8,
        "view": {"stroke": None, "continuousWidth": WIDTH, "continuousHeight": HEIGHT},
        "title": {**title, "subtitleColor": DARK_GREY, "subtitleFontSize": 12},
        "axis": {**text, **sizes, **grid},
        "axisBand": {"grid": False, "ticks": False},
        "scale": {"bandPaddingInner": 0.25},
        "legend": {**text, **sizes, "orient": "top", "symbolType": "square"},
        "range": {"category": list(PALETTE)},
        "mark": {"color": NHS_BLUE},
        "line": {"color": NHS_BLUE, "strokeWidth": 2.5},
        "point": {"color": NHS_BLUE, "filled": True, "size": 40},
        "rule": {"color": DARK_GREY},
        "text": {"color": DARK_GREY, "font": FONT, "fontSize": 11},
        "concat": {"spacing": 8},
    }
    return {"config": config}  # type: ignore[typeddict-item]


alt.theme.register("nhs", enable=False)(nhs_theme)


def use_nhs_theme() -> None:
    """Enable the ``nhs`` theme for every chart rendered from now on in this process."""
    alt.theme.enable("nhs")


def use_offline_renderer() -> None:
    """Render charts as static SVG (via vl-convert): they draw in HTML with no network.

    Altair's default renderer needs Vega from a CDN; the ``svg`` renderer converts in the
    kernel, so the notebook stores SVG that nbconvert can put straight into the page.
    """
    if importlib.util.find_spec("vl_convert") is None:  # pragma: no cover - a reports dependency
        raise UsageError("offline charts need vl-convert-python: pip install 'fdp[reports]'")
    alt.renderers.enable("svg")


def suppression_note(
    n_suppressed: int, *, min_count: int = 8, rounding_base: int = 5, noun: str = "category"
) -> str:
    """The disclosure sentence for a caption, e.g. for 2 suppressed categories:

    "Counts of 1-7 suppressed (*), others rounded to the nearest 5; 2 categories suppressed."
    Defaults are the HES/ECDS rule (ARCHITECTURE.md governance defaults).
    """
    if isinstance(n_suppressed, bool) or not isinstance(n_suppressed, int) or n_suppressed < 0:
        raise UsageError(f"n_suppressed must be a whole number >= 0, not {n_suppressed!r}")
    rules = []
    if min_count > 1:
        low = "1" if min_count == 2 else f"1-{min_count - 1}"
        rules.append(f"Counts of {low} suppressed (*)")
    if rounding_base > 1:
        rules.append(f"{'others' if rules else 'Counts'} rounded to the nearest {rounding_base}")
    if not rules:
        return "No suppression or rounding applied."
    if n_suppressed != 1:
        noun = noun[:-1] + "ies" if noun.endswith("y") else noun + "s"
    count = f"{n_suppressed or 'no'} {noun}"
    return f"{', '.join(rules)}; {count} suppressed."


def caption(source: str, n_suppressed: int, *, note: str = "", noun: str = "category") -> str:
    """``"Source: <source>. <suppression note>[ <note>]"``."""
    if not source.strip():
        raise UsageError("every chart needs a source")
    text = f"Source: {source.strip().rstrip('.')}. {suppression_note(n_suppressed, noun=noun)}"
    return f"{text} {note.strip()}" if note.strip() else text


def _lines(text: str, width_px: int, px_per_char: float) -> list[str]:
    return textwrap.wrap(text, max(30, int(width_px / px_per_char))) or [""]


def with_caption(chart: Chart, *, title: str, text: str, width: int = WIDTH) -> alt.VConcatChart:
    """Put ``title`` above ``chart`` and the caption ``text`` (see ``caption``) below it."""
    if not title.strip():
        raise UsageError("every chart needs a title")
    style = dict(fontSize=11, fontWeight="normal", color=DARK_GREY, offset=10)
    below = alt.TitleParams(_lines(text, width, 5.6), orient="bottom", anchor="start", **style)
    return alt.vconcat(chart.properties(title=below), title=_lines(title, width, 8.5))


def _numeric(s: pd.Series, name: str) -> pd.Series:
    """Released values as float64 with NaN for suppressed cells (``<NA>``, None or "*")."""
    if not ptypes.is_numeric_dtype(s) or ptypes.is_bool_dtype(s):
        s = s.astype(object).where(s.astype(object).ne("*"), None)
        try:
            s = pd.to_numeric(s)
        except (TypeError, ValueError) as exc:
            raise UsageError(f"column {name!r} must hold numbers (or <NA> if suppressed)") from exc
    return s.astype("Float64").astype("float64")


def _plain(s: pd.Series) -> pd.Series:
    """Nullable/extension dtypes to plain NumPy ones that Altair serialises safely."""
    if ptypes.is_datetime64_any_dtype(s):
        return s
    if ptypes.is_object_dtype(s) and len(s) and all(isinstance(v, dt.date) for v in s):
        return pd.to_datetime(s)  # datetime.date objects are not JSON: plot them as dates
    if ptypes.is_integer_dtype(s) and not s.hasnans:
        return s.astype("int64")
    if ptypes.is_numeric_dtype(s) and not ptypes.is_bool_dtype(s):
        return s.astype("float64")
    return s.astype(object)


def released(
    df: pd.DataFrame, value: str, keys: Sequence[str], *, keep_suppressed: bool = False
) -> tuple[pd.DataFrame, int]:
    """Columns ``keys`` + ``value`` ready to plot, and how many values were suppressed.

    Rows with a missing key are dropped. Rows with a suppressed value are dropped too, or with
    ``keep_suppressed`` kept as NaN, which Altair writes as null (a line breaks at the gap).
    """
    if not isinstance(df, pd.DataFrame):
        raise UsageError("charts take a pandas DataFrame of released figures")
    cols = list(dict.fromkeys([*keys, value]))
    missing = [c for c in cols if c not in df.columns]
    if missing:
        raise UsageError(f"no column {missing} in the frame; it has {list(df.columns)}")
    out = df.loc[:, cols].copy()
    out[value] = _numeric(out[value], value)
    out = out.dropna(subset=list(keys))
    n_suppressed = int(out[value].isna().sum())
    if not keep_suppressed:
        out = out.dropna(subset=[value])
    out = out.reset_index(drop=True)
    for c in keys:
        out[c] = _plain(out[c])
    return out, n_suppressed


def _type(s: pd.Series, *, category: bool = False) -> str:
    if ptypes.is_datetime64_any_dtype(s):
        return "temporal"
    if ptypes.is_numeric_dtype(s) and not ptypes.is_bool_dtype(s):
        return "ordinal" if category else "quantitative"
    return "nominal"


def _label(column: str, labels: Mapping[str, str] | None) -> str:
    """Axis/legend title: ``labels[column]``, else the column name in words."""
    return (labels or {}).get(column) or column.replace("_", " ").strip().capitalize()


def _with_target(
    chart: alt.Chart, target: float | None, label: str | None, fmt: str | None, vertical: bool
) -> Chart:
    """``chart`` plus a dashed reference rule at ``target`` and its label (if a target)."""
    if target is None:
        return chart
    shown = f"{target:.0%}" if fmt and fmt.endswith("%") else f"{target:,g}"
    data = pd.DataFrame({"target": [float(target)], "label": [label or f"Target {shown}"]})
    base = alt.Chart(data)
    rule = base.mark_rule(color=DARK_BLUE, strokeDash=[6, 4], strokeWidth=1.5)
    if vertical:  # a vertical rule (horizontal bars): label just above the plot
        text = base.mark_text(align="center", baseline="bottom", dy=-4, color=DARK_BLUE)
        pos = {"x": "target:Q", "y": alt.value(0)}
    else:  # a horizontal rule: label at its right-hand end, above the line
        text = base.mark_text(align="right", baseline="bottom", dy=-3, color=DARK_BLUE)
        pos = {"y": "target:Q", "x": alt.value("width")}
    rule = rule.encode(**{"x" if vertical else "y": "target:Q"})
    return alt.layer(chart, rule, text.encode(text="label:N", **pos))


def _colour(data: pd.DataFrame, color: str, labels: Mapping[str, str] | None) -> alt.Color:
    ctype = _type(data[color], category=True)
    return alt.Color(color, type=ctype, sort=None, title=_label(color, labels))


def _value(field: str, labels: Mapping[str, str] | None, fmt: str | None) -> dict[str, Any]:
    axis = alt.Axis(format=fmt or alt.Undefined)
    return dict(field=field, type="quantitative", title=_label(field, labels), axis=axis)


def bar(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    title: str,
    source: str,
    color: str | None = None,
    target: float | None = None,
    target_label: str | None = None,
    horizontal: bool = False,
    breach: Literal["below", "above"] | None = None,
    value_format: str | None = None,
    labels: Mapping[str, str] | None = None,
    size: Size = (WIDTH, HEIGHT),
) -> alt.VConcatChart:
    """Bars of value ``y`` per category ``x`` (``horizontal`` lists categories down the side).

    ``color`` groups bars side by side; ``target`` draws a dashed reference line labelled
    ``target_label``; ``breach="below"`` (or ``"above"``) colours bars on the wrong side of it
    Emergency red. ``value_format`` is a d3 format for the value axis, e.g. ``".0%"``;
    ``labels`` maps column names to axis titles. Categories keep the frame's order.
    """
    if breach is not None and (target is None or color is not None or breach not in _BREACH):
        raise UsageError('breach="below" or "above" needs a target and no color')
    data, n = released(df, y, [x] if color is None else [x, color])
    cat_axis = alt.Axis() if horizontal else alt.Axis(**_CAT_AXIS)
    cat = dict(field=x, type=_type(data[x], category=True), sort=None, title=_label(x, labels))
    val = _value(y, labels, value_format)
    enc: dict[str, Any] = {}
    if horizontal:
        enc.update(y=alt.Y(**cat, axis=cat_axis), x=alt.X(**val))
    else:
        enc.update(x=alt.X(**cat, axis=cat_axis), y=alt.Y(**val))
    if color is not None:
        enc["color"] = _colour(data, color, labels)
        offset = alt.YOffset(color, sort=None) if horizontal else alt.XOffset(color, sort=None)
        enc["yOffset" if horizontal else "xOffset"] = offset
    elif breach is not None:
        test = f"datum[{y!r}] {'<' if breach == 'below' else '>'} {float(target)!r}"
        enc["color"] = alt.condition(test, alt.value(EMERGENCY_RED), alt.value(NHS_BLUE))
    props = {"width": size[0], "height": alt.Step(BAR_STEP) if horizontal else size[1]}
    chart = alt.Chart(data).mark_bar().encode(**enc)
    chart = _with_target(chart, target, target_label, value_format, horizontal).properties(**props)
    note = f"Red bars are {breach} the target." if breach else ""
    return with_caption(chart, title=title, text=caption(source, n, note=note), width=size[0])


def line(
    df: pd.DataFrame,
    x: str,
    y: str,
    *,
    title: str,
    source: str,
    color: str | None = None,
    target: float | None = None,
    target_label: str | None = None,
    value_format: str | None = None,
    labels: Mapping[str, str] | None = None,
    size: Size = (WIDTH, HEIGHT),
) -> alt.VConcatChart:
    """A line of ``y`` over ``x`` (one per ``color`` group) with points; it breaks where a
    value is suppressed rather than joining across the gap. Optional dashed ``target``."""
    data, n = released(df, y, [x] if color is None else [x, color], keep_suppressed=True)
    enc: dict[str, Any] = {
        "x": alt.X(x, type=_type(data[x]), title=_label(x, labels), sort=None),
        "y": alt.Y(**_value(y, labels, value_format)),
    }
    if color is not None:
        enc["color"] = _colour(data, color, labels)
    props = {"width": size[0], "height": size[1]}
    mark = alt.Chart(data).mark_line(point=True, invalid="break-paths-show-domains")
    chart = _with_target(mark.encode(**enc), target, target_label, value_format, False)
    chart = chart.properties(**props)
    return with_caption(chart, title=title, text=caption(source, n, noun="point"), width=size[0])


def histogram_bands(
    df: pd.DataFrame,
    band: str,
    count: str,
    *,
    title: str,
    source: str,
    markers: Sequence[int] = (18, 52, 65, 78),
    labels: Mapping[str, str] | None = None,
    size: Size = (WIDTH, HEIGHT),
) -> alt.VConcatChart:
    """One bar per week band (band ``k`` spans weeks k to k+1), with a labelled vertical
    rule at each week in ``markers`` (18: the RTT standard; 52/65/78: long waits).

    Expects one row per band (aggregate the other columns first). The x axis is titled
    "Weeks waited" unless ``labels`` says otherwise.
    """
    data, n = released(df, count, [band])
    if data[band].duplicated().any():
        raise UsageError(f"one row per {band!r} expected: aggregate the other columns first")
    data["band_end"] = data[band].astype("float64") + 1
    x_title = (labels or {}).get(band, "Weeks waited")
    x = alt.X(band, type="quantitative", bin="binned", title=x_title)
    y = alt.Y(count, type="quantitative", title=_label(count, labels))
    layers = [alt.Chart(data).mark_bar(binSpacing=1).encode(x=x, x2="band_end:Q", y=y)]
    if markers:
        weeks = pd.DataFrame({"week": [float(w) for w in markers]})
        weeks["label"] = [f"{w:g} wks" for w in weeks["week"]]
        base = alt.Chart(weeks)
        text = base.mark_text(align="left", baseline="top", dx=3, dy=2, color=EMERGENCY_RED)
        layers.append(base.mark_rule(color=EMERGENCY_RED, strokeDash=[4, 3]).encode(x="week:Q"))
        layers.append(text.encode(x="week:Q", y=alt.value(0), text="label:N"))
    chart = alt.layer(*layers).properties(width=size[0], height=size[1])
    return with_caption(chart, title=title, text=caption(source, n, noun="band"), width=size[0])


def pareto(
    df: pd.DataFrame,
    category: str,
    count: str,
    *,
    title: str,
    source: str,
    labels: Mapping[str, str] | None = None,
    size: Size = (WIDTH, HEIGHT),
) -> alt.VConcatChart:
    """Bars of ``count`` per ``category``, largest first, with the cumulative share as a
    line on a right-hand 0-100% axis. Shares are of the categories shown (released figures);
    suppressed categories are left out and counted in the caption."""
    data, n = released(df, count, [category])
    data = data.sort_values(count, ascending=False, kind="stable").reset_index(drop=True)
    total = float(data[count].sum())
    data["cumulative_share"] = data[count].cumsum() / total if total else 0.0
    ctype = _type(data[category], category=True)
    title_x = _label(category, labels)
    x = alt.X(category, type=ctype, sort=None, title=title_x, axis=alt.Axis(**_CAT_AXIS))
    base = alt.Chart(data).encode(x=x)
    bars = base.mark_bar().encode(y=alt.Y(count, type="quantitative", title=_label(count, labels)))
    axis = alt.Axis(format=".0%", orient="right", grid=False)
    cum = alt.Y(
        "cumulative_share:Q", title="Cumulative share", scale=alt.Scale(domain=[0, 1]), axis=axis
    )
    share = base.mark_line(color=ORANGE, point={"color": ORANGE, "filled": True}).encode(y=cum)
    chart = alt.layer(bars, share).resolve_scale(y="independent")
    chart = chart.properties(width=size[0], height=size[1])
    note = "Cumulative share is of the categories shown."
    return with_caption(chart, title=title, text=caption(source, n, note=note), width=size[0])
