"""Vaccination events: seasonal flu and COVID-19, the childhood schedule, school programmes.

Eligibility follows DOMAIN.md section 2 (flu: 65+ by 31 March, clinical risk groups from the
LTC registers, children aged 2-3 on 31 August at the practice and school years Reception-11 by
the community provider; COVID-19: 75+). Uptake falls with deprivation and varies by ethnic
group near the published figures (flu 65+ ~75%, 6-in-1 at 12 months ~91%, MMR2 at 5 ~84%).
People are consistent across seasons: who had flu vaccine last year mostly has it this year.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

FLU = "822851000000102"
COVID_BOOSTER = "1362591000000103"
SIX_IN_ONE = "1082441000000108"
MMR = "38598009"
MENB = "720539004"
PCV = "1119254000"
HPV = "761841000"
MENACWY = "871874000"
TDIPV = "866186002"
ARM = np.array(["368208006", "368209003"])
THIGH = np.array(["61396006", "11207009"])
IM, NASAL_ROUTE, NASAL_SITE = "78421000", "46713006", "45206002"
RISK_REGISTERS = ("AST", "COPD", "CHD", "HF", "DM", "CKD", "STIA", "DEM", "LD")
ETHNIC_UPTAKE = {
    "A": 1.04,
    "B": 0.97,
    "C": 0.90,
    "D": 0.85,
    "E": 0.85,
    "F": 0.88,
    "G": 0.86,
    "H": 0.95,
    "J": 0.80,
    "K": 0.82,
    "L": 0.90,
    "M": 0.70,
    "N": 0.74,
    "P": 0.72,
    "R": 0.90,
    "S": 0.85,
    "Z": 0.85,
    "99": 0.85,
}


def _season_start(as_of: dt.date) -> int:
    return as_of.year if as_of.month >= 9 else as_of.year - 1


class _Events:
    def __init__(self) -> None:
        self.parts: dict[str, list] = {
            k: []
            for k in ("person", "date", "programme", "procedure", "dose", "site", "route", "giver")
        }

    def add(self, person, date, programme, procedure, dose, site, route, giver="practice"):
        n = person.size
        for key, value in (
            ("person", person),
            ("date", date),
            ("programme", np.full(n, programme)),
            ("procedure", np.full(n, procedure)),
            ("dose", np.full(n, dose, dtype=np.int8)),
            ("site", site if isinstance(site, np.ndarray) else np.full(n, site)),
            ("route", np.full(n, route)),
            ("giver", np.full(n, giver)),
        ):
            self.parts[key].append(value)

    def arrays(self) -> dict[str, np.ndarray]:
        return {k: np.concatenate(v) for k, v in self.parts.items()}


def generate_vaccinations(people, registers, as_of: dt.date, rng: np.random.Generator):
    as_of64 = np.datetime64(as_of, "D")
    n = people["age_years"].size
    dob = people["date_of_birth"]
    dod = people["date_of_death"]
    decile = people["imd_decile"].astype(float)
    eth = np.vectorize(ETHNIC_UPTAKE.get)(people["ethnicity"])
    dep = 1 + 0.022 * (decile - 5.5)
    propensity = rng.random(n)  # the same person tends to say yes (or no) every season
    at_risk = np.zeros(n, dtype=bool)
    at_risk[registers["person"][np.isin(registers["condition"], RISK_REGISTERS)]] = True
    ev = _Events()

    def alive_on(dates):
        return np.isnat(dod) | (dod > dates)

    def age_on(day: np.datetime64):
        return (day - dob).astype(np.int64) / 365.25

    def takes(p):
        mixed = np.where(rng.random(n) < 0.8, propensity, rng.random(n))
        return mixed < np.clip(p, 0, 0.98)

    def arm(size):
        return ARM[rng.integers(0, 2, size)]

    this_season = _season_start(as_of)
    for year, drift in ((this_season - 1, 1.0), (this_season, 0.985)):
        oct1 = np.datetime64(f"{year}-10-01")
        sep1 = np.datetime64(f"{year}-09-01")
        season_end = np.datetime64(f"{year + 1}-03-01")
        # Flu: adults from October, children from September; most doses in the first 8 weeks.
        age_march = age_on(np.datetime64(f"{year + 1}-03-31"))
        age_aug = age_on(np.datetime64(f"{year}-08-31"))
        cohorts = (
            (age_march >= 65, 0.75 * np.minimum(1 + (age_march - 65) * 0.004, 1.1), oct1, False),
            ((age_march < 65) & (age_march >= 0.5) & at_risk, 0.40, oct1, False),
            ((age_aug >= 2) & (age_aug < 4), 0.43, sep1, True),
            ((age_aug >= 4) & (age_aug < 16), 0.55, sep1, True),
        )
        for eligible, base, opens, children in cohorts:
            giver = "community" if children and base == 0.55 else "practice"
            date = opens + rng.gamma(2.0, 14.0, n).astype("timedelta64[D]")
            date = np.minimum(date, season_end - np.timedelta64(1, "D"))
            got = eligible & takes(base * dep * eth * drift) & alive_on(date) & (date <= as_of64)
            idx = np.flatnonzero(got)
            ev.add(
                idx,
                date[idx],
                "flu",
                FLU,
                1,
                NASAL_SITE if children else arm(idx.size),
                NASAL_ROUTE if children else IM,
                giver,
            )
        # COVID-19 autumn campaign for 75+ and spring campaign for 75+.
        for opens, base in ((oct1, 0.62), (np.datetime64(f"{year + 1}-04-15"), 0.52)):
            date = opens + rng.gamma(2.0, 12.0, n).astype("timedelta64[D]")
            eligible = age_on(opens) >= 75
            got = eligible & takes(base * dep**1.5 * eth) & alive_on(date) & (date <= as_of64)
            idx = np.flatnonzero(got)
            ev.add(idx, date[idx], "covid", COVID_BOOSTER, 1, arm(idx.size), IM)

    # Childhood schedule: (procedure, dose, due age in days, coverage).
    new_schedule = dob >= np.datetime64("2024-07-01")
    # Children under 8: a year-earlier view of "MMR2 at 5 years" needs those now aged 6-7.
    child = np.flatnonzero(age_on(as_of64) < 8)
    child_p = np.clip(1.0 * (1 + 0.012 * (decile[child] - 5.5)) * eth[child] ** 0.5, 0, 0.995)
    child_u = rng.random(child.size)
    schedule = [
        (SIX_IN_ONE, 1, 56, 0.975),
        (SIX_IN_ONE, 2, 84, 0.96),
        (SIX_IN_ONE, 3, 112, 0.94),
        (MENB, 1, 56, 0.95),
        (MENB, 2, 84, 0.93),
        (PCV, 1, 112, 0.93),
        (MMR, 1, 365, 0.915),
        (MENB, 3, 365, 0.90),
        (PCV, 2, 365, 0.90),
    ]
    for procedure, dose, due, coverage in schedule:
        _child_dose(ev, rng, child, dob, child_u, child_p * coverage, due, procedure, dose, as_of64)
    old = ~new_schedule[child]
    p_mmr2_old = np.where(old, child_p * 0.87, 0)
    _child_dose(ev, rng, child, dob, child_u, p_mmr2_old, 1218, MMR, 2, as_of64)
    p_new = np.where(~old, child_p * 0.88, 0)
    _child_dose(ev, rng, child, dob, child_u, p_new, 548, SIX_IN_ONE, 4, as_of64)
    _child_dose(ev, rng, child, dob, child_u, p_new, 548, MMR, 2, as_of64)

    # School-aged programme (community provider): HPV in Year 8, MenACWY and Td/IPV in Year 9.
    for year in (this_season - 2, this_season - 1, this_season):
        age_aug = age_on(np.datetime64(f"{year}-08-31"))
        term = np.datetime64(f"{year}-09-15")
        for procedure, lo, base in ((HPV, 12, 0.72), (MENACWY, 13, 0.78), (TDIPV, 13, 0.78)):
            date = term + rng.integers(0, 290, n).astype("timedelta64[D]")
            eligible = (age_aug >= lo) & (age_aug < lo + 1)
            got = eligible & takes(base * dep * eth) & (date <= as_of64) & alive_on(date)
            idx = np.flatnonzero(got)
            ev.add(idx, date[idx], "school", procedure, 1, arm(idx.size), IM, "community")
    return ev.arrays()


def _child_dose(ev, rng, child, dob, child_u, p, due, procedure, dose, as_of64):
    delay = rng.exponential(18.0, child.size).astype(np.int64)
    date = dob[child] + np.timedelta64(due, "D") + delay.astype("timedelta64[D]")
    got = (child_u < p) & (date <= as_of64)
    idx = child[got]
    site = THIGH[rng.integers(0, 2, idx.size)] if due < 365 else ARM[rng.integers(0, 2, idx.size)]
    ev.add(idx, date[got], "childhood", procedure, dose, site, IM)
