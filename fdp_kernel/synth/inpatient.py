"""Inpatient spells, daily bed occupancy and the social care packages that follow discharge.

Emergency admissions rise steeply with age and deprivation; elective admissions follow the
RTT pathways treated by admission. Each spell has a clinical length of stay, then a
discharge-ready date; the wait from ready to discharge depends on the discharge pathway
(P0 short, P3 long), which gives the NCTR delays with their reasons. Bed occupancy is the
midnight count of these very spells against a bed base sized to run near 92-95%, so the
sitrep and the patient-level data agree.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fdp_kernel.synth.orgs import ACUTE_TRUSTS

WINDOW_DAYS = 365
WARM_UP_DAYS = 60
EMERGENCY_TFCS = np.array(["300", "430", "100", "110", "320", "340", "301", "X02"])
EMERGENCY_TFC_P = np.array([0.30, 0.15, 0.15, 0.10, 0.10, 0.08, 0.07, 0.05])
# Delay reasons by pathway (NCTR categories of the discharge sitrep).
REASONS = {
    0: (["MED", "TTO", "TRN", "DIA", "THR", "NOP"], [0.30, 0.25, 0.15, 0.15, 0.10, 0.05]),
    1: (["P1H", "HUB", "EQP", "THR", "MED", "DIS"], [0.45, 0.20, 0.10, 0.10, 0.10, 0.05]),
    2: (["P2B", "HUB", "THR", "INF", "MED"], [0.55, 0.20, 0.10, 0.05, 0.10]),
    3: (["P3C", "HUB", "DIS", "SAF", "HML", "REP"], [0.55, 0.15, 0.15, 0.08, 0.04, 0.03]),
}
# Median days from discharge-ready to discharge, by pathway.
DELAY_MEDIAN = np.array([0.3, 2.0, 5.0, 9.0])


def _pathway_for(age, rng):
    """P0-P3 by age: older people more often need support after discharge."""
    p = np.select(
        [age < 65, age < 80],
        [0, 1],
        2,
    )
    table = np.array(
        [[0.85, 0.13, 0.015, 0.005], [0.50, 0.43, 0.05, 0.02], [0.25, 0.58, 0.12, 0.05]]
    )
    cum = table[p].cumsum(axis=1)
    return (rng.random(age.size)[:, None] > cum).sum(axis=1).astype(np.int8)


def generate_spells(people, practices, rtt, as_of: dt.date, rng: np.random.Generator):
    as_of64 = np.datetime64(as_of, "D")
    age = people["age_years"]
    decile = people["imd_decile"].astype(float)
    n_people = age.size
    span = WINDOW_DAYS + WARM_UP_DAYS

    # Emergency admissions: ~0.1 a year at 40, ~0.6 at 90; more in deprived areas.
    rate = 0.035 * np.exp(0.028 * age) * (1 + 0.06 * (5.5 - decile))
    counts = rng.poisson(rate * span / 365.0)
    person_e = np.repeat(np.arange(n_people), counts)
    admit_e = as_of64 - rng.integers(0, span, person_e.size).astype("timedelta64[D]")
    main = np.array([p.main_trust for p in practices])[people["practice_idx"]]
    trust_e = np.where(
        rng.random(person_e.size) < 0.85, main[person_e], rng.integers(0, 3, person_e.size)
    )

    # Elective admissions: admitted RTT pathways stopped by treatment.
    treated = (rtt["rtt_period_status"] == "30") & rtt["admitted"]
    treated &= rtt["rtt_end_date"] > as_of64 - np.timedelta64(span, "D")
    person_l = rtt["person"][treated]
    admit_l = rtt["rtt_end_date"][treated]
    trust_l = rtt["trust"][treated]
    day_case = rtt["intended_management_code"][treated] == "2"

    # About half of the people who died in the window died in one of the trusts.
    dod_all = people["date_of_death"]
    dying = np.flatnonzero(~np.isnat(dod_all) & (rng.random(n_people) < 0.45))
    admit_d = dod_all[dying] - rng.integers(0, 15, dying.size).astype("timedelta64[D]")

    person = np.concatenate([person_e, dying, person_l])
    admission = np.concatenate([admit_e, admit_d, admit_l])
    trust = np.concatenate([trust_e, main[dying], trust_l])
    n_em = person_e.size + dying.size
    emergency = np.concatenate([np.ones(n_em, bool), np.zeros(person_l.size, bool)])
    dies = np.concatenate([np.zeros(person_e.size, bool), np.ones(dying.size, bool)])
    dies = np.concatenate([dies, np.zeros(person_l.size, bool)])
    n = person.size
    a = age[person]

    # Clinical length of stay: lognormal, longer with age; elective day cases go home same day.
    median_los = np.where(emergency, 2.5 + np.maximum(a - 50, 0) * 0.12, 2.5)
    clinical = rng.lognormal(np.log(median_los), 0.9).astype(np.int64)
    clinical[~emergency] = np.where(day_case, 0, clinical[~emergency])
    ready = admission + clinical.astype("timedelta64[D]")
    pathway = _pathway_for(a, rng)
    pathway[~emergency] = np.where(rng.random((~emergency).sum()) < 0.93, 0, 1)
    delay = rng.lognormal(np.log(DELAY_MEDIAN[pathway] + 0.01), 1.0).astype(np.int64)
    delay[pathway == 0] = np.where(rng.random((pathway == 0).sum()) < 0.75, 0, delay[pathway == 0])
    discharge = ready + delay.astype("timedelta64[D]")

    # Deaths: people who died in the year die in hospital about half the time.
    dod = people["date_of_death"][person]
    after_death = ~np.isnat(dod) & (admission > dod)
    died_here = dies | (~np.isnat(dod) & (admission <= dod) & (discharge >= dod))
    discharge[died_here] = dod[died_here]
    keep = ~after_death & (
        np.isnat(discharge) | (discharge >= as_of64 - np.timedelta64(WINDOW_DAYS, "D"))
    )
    keep &= admission <= as_of64
    idx = np.flatnonzero(keep)
    person, admission, trust, emergency = person[idx], admission[idx], trust[idx], emergency[idx]
    ready, discharge, pathway, delay = ready[idx], discharge[idx], pathway[idx], delay[idx]
    died_here, a = died_here[idx], a[idx]
    n = idx.size

    in_hospital = discharge > as_of64
    ready_known = ready <= np.where(in_hospital, as_of64, discharge)
    ready_date = np.where(ready_known & ~died_here, ready, np.datetime64("NaT"))
    reason = np.full(n, None, dtype=object)
    delayed = ready_known & ~died_here & ((discharge > ready) | in_hospital)
    for p, (codes_, probs) in REASONS.items():
        m = delayed & (pathway == p)
        reason[m] = np.asarray(codes_, dtype=object)[rng.choice(len(codes_), m.sum(), p=probs)]
    pathway_out = np.where(died_here | (in_hospital & ~ready_known), -1, pathway)
    discharge_out = np.where(in_hospital, np.datetime64("NaT"), discharge)

    method = np.where(
        emergency,
        np.asarray(["21", "22", "28"])[rng.choice(3, n, p=[0.75, 0.18, 0.07])],
        np.asarray(["11", "12", "13"])[rng.choice(3, n, p=[0.80, 0.15, 0.05])],
    )
    tfc = np.where(
        emergency,
        EMERGENCY_TFCS[rng.choice(EMERGENCY_TFCS.size, n, p=EMERGENCY_TFC_P)],
        "100",
    )
    return {
        "person": person,
        "trust": trust,
        "admission_date": admission,
        "discharge_date": discharge_out.astype("datetime64[D]"),
        "admission_method": method,
        "treatment_function_code": tfc,
        "discharge_ready_date": ready_date.astype("datetime64[D]"),
        "discharge_pathway": pathway_out.astype(np.int8),  # -1 = null
        "nctr_reason": reason,
        "died_in_hospital": died_here,
        "_discharge_or_end": np.where(in_hospital, as_of64 + np.timedelta64(1, "D"), discharge),
    }


def bed_occupancy(spells, as_of: dt.date, rng: np.random.Generator):
    """Midnight occupancy per trust per day from the spells, and a bed base to match."""
    as_of64 = np.datetime64(as_of, "D")
    first = as_of64 - np.timedelta64(WINDOW_DAYS - 1, "D")
    days = WINDOW_DAYS
    rows = {"trust": [], "date": [], "available": [], "occupied": []}
    a = (spells["admission_date"] - first).astype(np.int64)
    d = (spells["_discharge_or_end"] - first).astype(np.int64)
    # A patient occupies a bed at midnight on each day from admission to the day before discharge.
    overnight = d > a
    for t in range(len(ACUTE_TRUSTS)):
        m = overnight & (spells["trust"] == t)
        delta = np.zeros(days + 1, dtype=np.int64)
        np.add.at(delta, np.clip(a[m], 0, days), 1)
        np.add.at(delta, np.clip(d[m], 0, days), -1)
        occupied = np.cumsum(delta)[:days]
        base = int(np.ceil(np.percentile(occupied, 60) / 0.95)) if occupied.max() > 0 else 1
        # Escalation beds open when the base is exceeded.
        available = np.maximum(base, occupied + rng.integers(0, 3, days))
        rows["trust"].append(np.full(days, t))
        rows["date"].append(first + np.arange(days).astype("timedelta64[D]"))
        rows["available"].append(available.astype(np.int32))
        rows["occupied"].append(occupied.astype(np.int32))
    return {k: np.concatenate(v) for k, v in rows.items()}


def care_packages(spells, rng: np.random.Generator):
    """Local authority packages for people discharged (or waiting) on pathways 1-3."""
    pathway = spells["discharge_pathway"]
    m = (pathway >= 1) & ~np.isnat(spells["discharge_ready_date"])
    idx = np.flatnonzero(m)
    p = pathway[idx]
    service = np.select(
        [p == 2, p == 3, rng.random(idx.size) < 0.6],
        ["intermediate_bed", "care_home", "reablement"],
        "home_care",
    )
    referral = spells["discharge_ready_date"][idx] - rng.integers(0, 3, idx.size).astype(
        "timedelta64[D]"
    )
    return {
        "spell": idx,
        "person": spells["person"][idx],
        "trust": spells["trust"][idx],
        "referral_date": referral,
        "start_date": spells["discharge_date"][idx],
        "service_type": service,
        "discharge_pathway": p,
    }
