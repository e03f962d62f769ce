"""Referral to treatment pathways and outpatient appointments at the acute trusts.

Clock starts arrive at about 0.35 per person per year (more with age); waits are lognormal
with a long tail (admitted pathways longer; urgent and two-week-wait referrals shorter; one
trust slower than the others), so each trust carries breaches of 52, 65 and 78 weeks. Stops
follow the RTT rules: treatment, active monitoring, decision not to treat, declined, death,
and first-appointment DNAs that nullify the clock. Outpatient DNAs are more common in more
deprived areas and among younger people.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fdp_kernel.synth.orgs import ACUTE_TRUSTS

HISTORY_DAYS = 3 * 365
# TFC: (share of clock starts, P(admitted pathway), wait factor)
TFC_MIX = {
    "110": (0.12, 0.45, 1.30),
    "130": (0.09, 0.40, 1.10),
    "120": (0.06, 0.35, 1.25),
    "100": (0.07, 0.50, 1.00),
    "502": (0.07, 0.35, 1.15),
    "330": (0.05, 0.10, 1.00),
    "101": (0.05, 0.40, 1.00),
    "320": (0.05, 0.15, 0.90),
    "301": (0.05, 0.25, 0.95),
    "340": (0.03, 0.05, 0.90),
    "400": (0.03, 0.05, 1.05),
    "410": (0.02, 0.05, 0.90),
    "430": (0.02, 0.05, 0.80),
    "300": (0.04, 0.10, 0.80),
    "140": (0.03, 0.40, 1.20),
    "160": (0.02, 0.40, 1.00),
    "150": (0.01, 0.50, 1.10),
    "170": (0.01, 0.60, 0.90),
    "X02": (0.07, 0.10, 0.90),
    "X03": (0.02, 0.05, 1.00),
    "X04": (0.04, 0.15, 0.90),
    "X05": (0.04, 0.40, 1.00),
    "X06": (0.05, 0.10, 0.90),
}
STOP_STATUS = np.array(["30", "31", "32", "34", "35"])
STOP_P = np.array([0.70, 0.05, 0.11, 0.10, 0.04])


def _choice(rng, values, p, size):
    p = np.asarray(p, dtype=float)
    return np.asarray(values)[rng.choice(len(p), size=size, p=p / p.sum())]


def generate_pathways(people, practices, as_of: dt.date, rng: np.random.Generator):
    """RTT pathways; returns working arrays keyed by catalogue column (+ person, trust index)."""
    age = people["age_years"]
    n_people = age.size
    as_of64 = np.datetime64(as_of, "D")
    rate = 0.30 * (0.5 + age / 60.0)
    counts = rng.poisson(rate * HISTORY_DAYS / 365.0)
    person = np.repeat(np.arange(n_people), counts)
    n = person.size
    start = as_of64 - rng.integers(0, HISTORY_DAYS, n).astype("timedelta64[D]")
    dod = people["date_of_death"][person]
    # A referral comes after birth (received up to 3 days before the clock starts) and
    # before death.
    born = people["date_of_birth"][person].astype("datetime64[D]")
    keep = (np.isnat(dod) | (start < dod)) & (start >= born + np.timedelta64(3, "D"))
    person, start, dod = person[keep], start[keep], dod[keep]
    n = person.size

    main = np.array([p.main_trust for p in practices])[people["practice_idx"][person]]
    sizes = np.array([t[2] for t in ACUTE_TRUSTS])
    other = rng.choice(len(ACUTE_TRUSTS), size=n, p=sizes / sizes.sum())
    trust = np.where(rng.random(n) < 0.78, main, other)

    tfc_codes = np.array(list(TFC_MIX))
    shares, p_admitted, factors = (np.array(v) for v in zip(*TFC_MIX.values(), strict=True))
    tfc_i = rng.choice(tfc_codes.size, size=n, p=shares / shares.sum())
    admitted = rng.random(n) < p_admitted[tfc_i]
    priority = _choice(rng, ["1", "2", "3"], [0.80, 0.15, 0.05], n)
    priority_factor = np.select([priority == "2", priority == "3"], [0.5, 0.25], 1.0)
    wait_mult = np.array([t[3] for t in ACUTE_TRUSTS])[trust]
    decile = people["imd_decile"][person].astype(float)
    median_days = np.where(admitted, 175.0, 88.0) * factors[tfc_i] * wait_mult * priority_factor
    median_days *= 1 + 0.02 * (5.5 - decile)
    duration = rng.lognormal(np.log(median_days), 0.85).astype(np.int64) + 1
    # Long waiters are actively managed: most pathways heading past 52, 65 or 78 weeks are
    # treated just before the breach, which leaves a thin tail as in the national figures.
    for limit, floor, p_caught in ((364, 280, 0.55), (455, 380, 0.80), (546, 470, 0.85)):
        caught = (duration > limit) & (rng.random(n) < p_caught)
        duration[caught] = rng.integers(floor, limit + 1, caught.sum())

    status = STOP_STATUS[rng.choice(STOP_STATUS.size, size=n, p=STOP_P)].astype(object)
    nullified = rng.random(n) < 0.05
    duration[nullified] = rng.integers(14, 57, nullified.sum())
    status[nullified] = "33"
    removed = (~nullified) & (rng.random(n) < 0.03)
    duration[removed] = (duration[removed] * rng.uniform(0.3, 1.0, removed.sum())).astype(int) + 1
    status[removed] = "20"
    end = start + duration.astype("timedelta64[D]")
    died_first = ~np.isnat(dod) & (dod < end)
    end[died_first] = dod[died_first]
    status[died_first] = "36"
    removed &= ~died_first
    open_ = end > as_of64
    end[open_] = np.datetime64("NaT")
    status[open_] = "20"

    clinical_priority = np.where(
        admitted, _choice(rng, ["P2", "P3", "P4"], [0.10, 0.40, 0.50], n), None
    )
    return {
        "person": person,
        "trust": trust,
        "referral_received_date": start - rng.integers(0, 4, n).astype("timedelta64[D]"),
        "rtt_start_date": start,
        "rtt_end_date": end,
        "waiting_list_type": np.where(admitted, "IRTT", "ORTT"),
        "treatment_function_code": tfc_codes[tfc_i],
        "priority_type_code": priority,
        "clinical_priority": clinical_priority,
        "source_of_referral": _choice(
            rng, ["03", "05", "10", "11", "92"], [0.70, 0.15, 0.05, 0.08, 0.02], n
        ),
        "intended_management_code": np.where(
            admitted, _choice(rng, ["1", "2"], [0.25, 0.75], n), None
        ),
        "rtt_period_status": status,
        "removed_by_validation": removed,
        "duration": duration,
        "open": open_,
        "admitted": admitted,
    }


def generate_appointments(people, rtt, as_of: dt.date, rng: np.random.Generator):
    """Outpatient appointments on each pathway, and the pathway fields that derive from them."""
    as_of64 = np.datetime64(as_of, "D")
    n = rtt["person"].size
    start = rtt["rtt_start_date"]
    end = np.where(rtt["open"], as_of64 + np.timedelta64(1, "D"), rtt["rtt_end_date"])
    span = np.maximum((end - start).astype(np.int64), 1)
    nullified = rtt["rtt_period_status"] == "33"

    # First appointment: within the pathway (nullified pathways end on a first-appointment DNA).
    first = start + np.minimum(rng.exponential(35.0, n).astype(np.int64) + 1, span - 1).astype(
        "timedelta64[D]"
    )
    first[nullified] = rtt["rtt_end_date"][nullified]
    n_follow = rng.poisson(np.where(rtt["admitted"], 0.8, 1.2))
    n_follow[nullified] = 0
    # Follow-ups spread between the first appointment and the end of the pathway.
    rep = np.repeat(np.arange(n), n_follow)
    gap = np.maximum((end - first).astype(np.int64)[rep], 1)
    follow_dates = first[rep] + (rng.random(rep.size) * gap).astype("timedelta64[D]")

    # Booked future appointments for open non-admitted pathways.
    booked = rtt["open"] & ~rtt["admitted"] & (rng.random(n) < 0.45)
    future = as_of64 + rng.integers(1, 85, n).astype("timedelta64[D]")

    pathway = np.concatenate([np.arange(n), rep, np.flatnonzero(booked)])
    date = np.concatenate([first, follow_dates, future[booked]])
    kind = np.concatenate([np.full(n, "1"), np.full(rep.size, "2"), np.full(booked.sum(), "2")])
    in_past = date <= as_of64
    m = pathway.size

    person = rtt["person"][pathway]
    decile = people["imd_decile"][person].astype(float)
    age = people["age_years"][person]
    p_dna = 0.042 * (1 + 0.12 * (5.5 - decile)) * np.select([age < 30, age >= 65], [1.4, 0.7], 1.0)
    u = rng.random(m)
    status = np.select(
        [u < p_dna, u < p_dna + 0.05, u < p_dna + 0.11, u < p_dna + 0.115],
        ["3", "2", "4", "7"],
        default="5",
    ).astype(object)
    status[(status == "5") & (rng.random(m) < 0.05)] = "6"
    first_of_nullified = nullified[pathway] & (kind == "1")
    status[first_of_nullified] = "3"
    status[~in_past] = None

    attended = np.isin(status, ["5", "6"])
    last_attended = np.full(n, np.iinfo(np.int64).min)
    np.maximum.at(last_attended, pathway[attended], date[attended].astype(np.int64))
    date_last_attended = last_attended.astype("datetime64[D]")
    date_last_attended[last_attended == np.iinfo(np.int64).min] = np.datetime64("NaT")
    next_booked = np.where(booked, future, np.datetime64("NaT"))

    # Decision to admit and TCI for admitted pathways; PAS validation dates for open pathways.
    dta = start + (span * 0.3).astype("timedelta64[D]")
    has_dta = rtt["admitted"] & (dta <= as_of64) & ~nullified
    tci_booked = has_dta & rtt["open"] & (rng.random(n) < 0.30)
    tci = np.where(tci_booked, as_of64 + rng.integers(1, 57, n).astype("timedelta64[D]"), None)
    v = rng.random(n)
    validated = np.select(
        [v < 0.45, v < 0.75],
        [
            as_of64 - rng.integers(0, 84, n).astype("timedelta64[D]"),
            as_of64 - rng.integers(85, 366, n).astype("timedelta64[D]"),
        ],
        np.datetime64("NaT"),
    ).astype("datetime64[D]")
    validated[~rtt["open"]] = np.datetime64("NaT")

    pathway_fields = {
        "decision_to_admit_date": np.where(has_dta, dta, np.datetime64("NaT")),
        "tci_date": np.array(tci, dtype="datetime64[D]"),
        "outpatient_future_appointment_date": next_booked.astype("datetime64[D]"),
        "date_last_attended": date_last_attended,
        "last_pas_validation_date": validated,
    }
    # A booked TCI shows a date on the pathway; an open pathway with no attendance is still '10'.
    no_activity = rtt["open"] & np.isnat(date_last_attended)
    rtt["rtt_period_status"][no_activity] = "10"

    appointments = {
        "pathway": pathway,
        "person": person,
        "trust": rtt["trust"][pathway],
        "appointment_date": date,
        "treatment_function_code": rtt["treatment_function_code"][pathway],
        "first_attendance": kind,
        "attendance_status": status,
        "moved_to_pifu": (kind == "2") & np.isin(status, ["5", "6"]) & (rng.random(m) < 0.04),
    }
    return pathway_fields, appointments
