"""What a person sees: the output of ``ws.release(...)``, already through disclosure control."""

from __future__ import annotations

import dataclasses
import html
from collections.abc import Mapping, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from fdp_kernel.errors import UsageError
from fdp_kernel.governance.disclosure import PERCENTAGE_COMPONENT, DisclosureRules


def rules_note(rules: DisclosureRules, n_suppressed: int, listing: bool = False) -> str:
    """One sentence for under a table or chart."""
    if listing:
        return "Record-level list released for direct care; every access is audited."
    if rules.min_count <= 1 and rules.rounding_base <= 1:
        note = "No small-number suppression (the figures are not about people)."
    else:
        note = (
            f"Counts of 1-{rules.min_count - 1} suppressed (*), others rounded to the nearest "
            f"{rules.rounding_base}; percentages from rounded figures."
        )
    if n_suppressed:
        note += f" {n_suppressed} cell{'s' if n_suppressed != 1 else ''} suppressed."
    return note


def rate(numerator: pd.Series, denominator: pd.Series, per: float = 100) -> pd.Series:
    """``numerator`` / ``denominator`` x ``per`` to 1 decimal place, from released figures:
    <NA> where either is <NA> (suppressed) or the denominator is 0."""
    num = numerator.astype("Float64")
    den = denominator.astype("Float64")
    return (num * per / den.where(den != 0)).round(1)


@dataclass(frozen=True, eq=False)
class Released:
    """Released figures: ``data`` has <NA> where a cell is suppressed; ``display()`` shows *."""

    data: pd.DataFrame
    suppressed: pd.DataFrame  # per measure cell: why it is hidden ('' when shown)
    title: str | None
    source: str
    note: str
    n_suppressed: int
    listing: bool = False

    def display(self) -> pd.DataFrame:
        """Released figures for people: * where suppressed, ≥n where a total is a lower bound."""
        out = self.data.copy()
        for col in self.suppressed.columns:
            reason = self.suppressed[col]
            bound = reason.str.startswith("lower bound")
            shown = out[col].astype(object)
            shown = shown.mask(bound, "≥" + out[col].astype("string").fillna(""))
            out[col] = shown.mask((reason != "") & ~bound, "*")
        return out

    # -- new views of the same released cells (figures never build a Released by hand) ------
    def take(self, rows: Sequence[int] | np.ndarray | pd.Series, title: str | None = None):
        """The released rows at ``rows`` (positions in order, or a boolean mask), each cell
        with its suppression reason: a subset or a reordering, nothing recomputed."""
        if isinstance(rows, pd.Series):
            rows = rows.to_numpy()
        rows = np.asarray(rows)
        if rows.dtype == bool:
            rows = np.flatnonzero(rows)
        data = self.data.reset_index(drop=True).iloc[rows].reset_index(drop=True)
        hidden = self.suppressed.reset_index(drop=True).iloc[rows].reset_index(drop=True)
        n = int((hidden != "").to_numpy().sum()) if len(hidden.columns) else 0
        return dataclasses.replace(
            self, data=data, suppressed=hidden, title=title or self.title, n_suppressed=n
        )

    def where(self, mask, title: str | None = None):
        """The rows where ``mask`` holds (NA counts as False)."""
        mask = pd.Series(mask, index=self.data.index).fillna(False).astype(bool)
        return self.take(mask.to_numpy(), title)

    def retitled(self, title: str | None):
        return dataclasses.replace(self, title=title)

    def reordered(self, order: Sequence[int] | np.ndarray | pd.Index):
        """The same released rows in ``order`` (every row position once): a sort, so nothing
        hidden or shown changes and ``n_suppressed`` is kept."""
        order = np.asarray(order, dtype=np.intp)
        if not np.array_equal(np.sort(order), np.arange(len(self.data))):
            raise UsageError("reordered takes every row position once; take() takes a subset")
        return dataclasses.replace(self.take(order), n_suppressed=self.n_suppressed)

    def stacked(
        self,
        ids: Sequence[str],
        blocks: Mapping[tuple, Mapping[str, str]],
        names: Sequence[str],
    ):
        """Blocks of columns as rows (wide to long): for each key of ``blocks``, every row's
        ``ids`` columns, the key's values in new columns ``names``, and the block's columns
        (new name -> released column). Each cell keeps its suppression reason."""
        frames, reasons = [], []
        for key, block in blocks.items():
            part = self.data[list(ids)].copy()
            for i, (name, value) in enumerate(zip(names, key, strict=True)):
                part.insert(len(ids) + i, name, value)
            shown = pd.Series("", index=self.data.index)
            why = {new: self.suppressed.get(old, shown) for new, old in block.items()}
            for new, old in block.items():
                part[new] = self.data[old]
            frames.append(part)
            reasons.append(pd.DataFrame(why))
        data = pd.concat(frames, ignore_index=True) if frames else pd.DataFrame()
        hidden = pd.concat(reasons, ignore_index=True) if reasons else pd.DataFrame()
        n = int((hidden != "").to_numpy().sum()) if len(hidden.columns) else 0
        return dataclasses.replace(self, data=data, suppressed=hidden, n_suppressed=n)

    def with_percentages(self, percentages: Mapping[str, tuple[str, str]]):
        """A copy with a column ``name`` = numerator / denominator x 100 (1 dp) for each of
        ``percentages`` (name -> (numerator, denominator)), from the released counts; as in a
        release, a percentage is hidden where either count is and is not counted in
        ``n_suppressed``."""
        data, hidden = self.data.copy(), self.suppressed.copy()
        for name, (numerator, denominator) in percentages.items():
            data[name] = rate(data[numerator], data[denominator])
            component = (hidden[numerator] != "") | (hidden[denominator] != "")
            hidden[name] = component.map({True: PERCENTAGE_COMPONENT, False: ""})
        return dataclasses.replace(self, data=data, suppressed=hidden)

    def to_pandas(self) -> pd.DataFrame:
        """A copy of the released figures (suppressed cells are <NA>)."""
        return self.data.copy()

    def __len__(self) -> int:
        return len(self.data)

    def __getitem__(self, column: str) -> pd.Series:
        return self.data[column]

    @property
    def caption(self) -> str:
        return f"Source: {self.source}. {self.note}"

    def _repr_html_(self) -> str:
        shown = self.display().astype(object)
        shown = shown.where(shown.notna(), "")
        table = shown.to_html(index=False, classes="fdp-released", border=0, na_rep="")
        title = f"<h4>{html.escape(self.title)}</h4>" if self.title else ""
        caption = f'<p class="fdp-caption"><small>{html.escape(self.caption)}</small></p>'
        return title + table + caption

    def __repr__(self) -> str:
        head = f"{self.title}\n" if self.title else ""
        return f"{head}{self.display().to_string(index=False)}\n{self.caption}"
