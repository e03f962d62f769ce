"""The organisations of a synthetic federation: one ICB and its providers and practices.

Codes have real ODS formats but come from a fixed allow-list chosen for the demo, and every
name says "Synthetic" so that nothing can be mistaken for a real organisation's data.
"""

from __future__ import annotations

import datetime as dt
from dataclasses import dataclass

import numpy as np

ICB = ("QSY", "Synthetic Northfield and Riverside ICB")
REGION = "Y63"  # North East and Yorkshire: the demo ICB is a northern urban one
ACUTE_TRUSTS = (
    # code, name, relative size, wait multiplier (how long its waits run), price factor
    ("RSA", "Synthetic Northfield Teaching Hospitals NHS FT", 1.00, 1.20, 1.00),
    ("RSB", "Synthetic Riverside General Hospital NHS Trust", 0.75, 0.95, 1.08),
    ("RSC", "Synthetic Moorland and Coast Hospitals NHS FT", 0.55, 0.85, 0.96),
)
COMMUNITY = ("RSD", "Synthetic Northfield Community Health NHS Trust")
LOCAL_AUTHORITY = ("701", "Synthetic Northfield City Council")
ORG_EFFECTIVE_FROM = dt.date(2022, 7, 1)  # ICBs were established on 1 July 2022

_PRACTICE_PLACES = (
    "Abbey",
    "Ashfield",
    "Beech",
    "Bridge",
    "Brook",
    "Castle",
    "Cedar",
    "Church",
    "Clifton",
    "Dale",
    "Elm",
    "Fairfield",
    "Field",
    "Garden",
    "Grange",
    "Green",
    "Grove",
    "Hall",
    "Heath",
    "High Street",
    "Hill",
    "Holly",
    "Kings",
    "Lakeside",
    "Lime",
    "Manor",
    "Market",
    "Meadow",
    "Mill",
    "Moor",
    "Oak",
    "Orchard",
    "Park",
    "Queens",
    "Riverside",
    "Rose",
    "Station",
    "Valley",
    "Victoria",
    "Willow",
)


@dataclass(frozen=True)
class Org:
    code: str
    name: str
    org_type: str
    parent_icb: str | None


@dataclass(frozen=True)
class Practice:
    code: str
    name: str
    pcn_code: str
    main_trust: int  # index into ACUTE_TRUSTS
    location: float  # position on a 0..1 line from the inner city (deprived) outwards


def n_practices_for(patients: int) -> int:
    """About 2,500 patients per practice in the demo (~40 for 100k), between 3 and 40."""
    return int(min(40, max(3, round(patients / 2500))))


def practices(n: int, rng: np.random.Generator) -> list[Practice]:
    locations = np.sort(rng.uniform(0.0, 1.0, n))
    out = []
    for i in range(n):
        code = f"Y9{i + 1:04d}"  # letter + 5 digits; the Y9xxxx block is kept for the demo
        place = _PRACTICE_PLACES[i % len(_PRACTICE_PLACES)]
        suffix = "" if i < len(_PRACTICE_PLACES) else f" {i // len(_PRACTICE_PLACES) + 1}"
        # Practices nearer the centre use the largest trust; the outskirts split between others.
        main = 0 if locations[i] < 0.45 else (1 if locations[i] < 0.75 else 2)
        out.append(
            Practice(
                code=code,
                name=f"Synthetic {place}{suffix} Surgery",
                pcn_code=f"U9{i // 6 + 1:04d}",
                main_trust=main,
                location=float(locations[i]),
            )
        )
    return out


def organisations(practice_list: list[Practice]) -> list[Org]:
    icb_code, icb_name = ICB
    orgs = [Org(icb_code, icb_name, "icb", None)]
    orgs += [Org(code, name, "acute_trust", icb_code) for code, name, *_ in ACUTE_TRUSTS]
    orgs.append(Org(COMMUNITY[0], COMMUNITY[1], "community_trust", icb_code))
    orgs.append(Org(LOCAL_AUTHORITY[0], LOCAL_AUTHORITY[1], "local_authority", icb_code))
    orgs += [Org(p.code, p.name, "gp_practice", icb_code) for p in practice_list]
    return orgs
