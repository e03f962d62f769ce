"""Long-term condition registers with age and deprivation gradients.

Each register's probability is ``scale x age_curve(age) x deprivation x frailty``, with
``scale`` solved so that recorded prevalence over the eligible population is near the QOF
2023/24 figure in DOMAIN.md. ``frailty`` is a per-person latent factor, so conditions cluster
(multimorbidity) as they do in real registers.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

# register: (QOF prevalence, minimum age, age-curve midpoint or None for flat, curve width,
#            deprivation strength: multiplier e^{+s} in decile 1 and e^{-s} in decile 10)
REGISTERS: dict[str, tuple[float, int, float | None, float, float]] = {
    "HYP": (0.148, 0, 62, 10, 0.15),
    "DEP": (0.130, 18, None, 0, 0.25),
    "OB": (0.130, 18, None, 0, 0.30),
    "DM": (0.077, 17, 60, 11, 0.35),
    "AST": (0.065, 6, None, 0, 0.15),
    "CKD": (0.040, 18, 74, 8, 0.15),
    "CAN": (0.036, 0, 68, 10, -0.05),
    "CHD": (0.030, 0, 72, 9, 0.30),
    "AF": (0.022, 0, 77, 8, -0.05),
    "STIA": (0.019, 0, 75, 9, 0.25),
    "COPD": (0.019, 0, 70, 8, 0.55),
    "HF": (0.011, 0, 79, 7, 0.30),
    "MH": (0.0095, 0, None, 0, 0.50),
    "DEM": (0.0075, 0, 85, 5, 0.10),
    "LD": (0.006, 0, None, 0, 0.20),
}


def generate_registers(people: dict[str, np.ndarray], as_of: dt.date, rng: np.random.Generator):
    """Rows of (person index, register code, diagnosis date) for every register entry."""
    age = people["age_years"]
    decile = people["imd_decile"].astype(float)
    frailty = people["frailty"]
    alive = np.isnat(people["date_of_death"])
    as_of64 = np.datetime64(as_of, "D")
    person_parts, code_parts, date_parts = [], [], []
    for code, (prevalence, min_age, mid, width, dep) in REGISTERS.items():
        eligible = (age >= min_age) & alive
        curve = 1.0 if mid is None else 1.0 / (1.0 + np.exp(-(age - mid) / width))
        if code == "MH":
            curve = np.where((age >= 18) & (age < 75), 1.0, 0.3)
        raw = curve * np.exp(dep * (5.5 - decile) / 4.5) * frailty * eligible
        total = raw.sum()
        if total <= 0:
            continue
        scale = prevalence * eligible.sum() / total
        p = np.minimum(raw * scale, 0.95)
        idx = np.flatnonzero(rng.random(age.size) < p)
        # Diagnosed some time after the minimum age and within the last 25 years.
        years_back = np.minimum(age[idx] - min_age, 25.0) * rng.random(idx.size)
        diagnosed = as_of64 - (years_back * 365.25).astype("timedelta64[D]")
        person_parts.append(idx)
        code_parts.append(np.full(idx.size, code))
        date_parts.append(diagnosed)
    return {
        "person": np.concatenate(person_parts),
        "condition": np.concatenate(code_parts),
        "diagnosis_date": np.concatenate(date_parts),
    }
