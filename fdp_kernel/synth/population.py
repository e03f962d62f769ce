"""Synthetic people: NHS numbers, demographics, deprivation and registration.

Realism (DOMAIN.md): an England-like age/sex structure; areas (LSOAs) with IMD deciles skewed
towards deprivation as in a northern urban ICB; ethnic minority groups more common in the
more deprived inner areas; about 5% national data opt-outs; deaths in the last year by a
Gompertz mortality curve. NHS numbers pass Modulus 11 and sit in the 9xx test range, which is
never issued to real people.
"""

from __future__ import annotations

import datetime as dt

import numpy as np

from fdp_kernel.identifiers import nhs_check_digits_array
from fdp_kernel.synth.orgs import Practice

# ONS mid-year estimate shape for England: share of population per 5-year band, 0-4 .. 90+.
AGE_BAND_SHARES = np.array(
    [5.4, 5.9, 6.1, 5.8, 6.0, 6.6, 6.9, 6.8, 6.4, 6.2, 6.7, 6.6, 5.8, 4.9, 4.7, 3.6, 2.4, 1.4, 0.9]
)
ETHNICITY_CODES = np.array([*"ABCDEFGHJKLMNPRSZ", "99"])
ETHNICITY_BASE = np.array(
    [73.0, 0.9, 6.2, 0.9, 0.5, 0.8, 0.9, 3.3, 2.7, 1.1, 1.7, 1.1, 2.5, 0.5, 0.7, 1.6, 1.1, 0.5]
)
_MINORITY = np.isin(ETHNICITY_CODES, ["A", "Z", "99"], invert=True)
# IMD decile mix of the demo ICB's LSOAs (1 = most deprived): skewed towards deprivation.
IMD_DECILE_WEIGHTS = np.array([16, 14, 12, 11, 10, 9, 8, 7, 7, 6], dtype=float)
OPT_OUT_RATE = 0.054

GIVEN_F = (
    "Olivia",
    "Amelia",
    "Isla",
    "Ava",
    "Mia",
    "Grace",
    "Sophia",
    "Lily",
    "Freya",
    "Emily",
    "Ivy",
    "Ella",
    "Rosie",
    "Evie",
    "Florence",
    "Poppy",
    "Charlotte",
    "Willow",
    "Isabella",
    "Sienna",
    "Margaret",
    "Susan",
    "Patricia",
    "Helen",
    "Sarah",
    "Karen",
    "Julie",
    "Fatima",
    "Aisha",
    "Maryam",
    "Zara",
    "Amira",
    "Priya",
    "Anjali",
    "Chloe",
    "Jessica",
    "Hannah",
    "Sophie",
    "Lucy",
    "Ruby",
)
GIVEN_M = (
    "Oliver",
    "George",
    "Noah",
    "Arthur",
    "Leo",
    "Muhammad",
    "Harry",
    "Oscar",
    "Archie",
    "Henry",
    "Theodore",
    "Freddie",
    "Jack",
    "Charlie",
    "Theo",
    "Thomas",
    "Jacob",
    "Alfie",
    "James",
    "William",
    "David",
    "John",
    "Michael",
    "Peter",
    "Paul",
    "Robert",
    "Mohammed",
    "Ali",
    "Omar",
    "Yusuf",
    "Arjun",
    "Ravi",
    "Daniel",
    "Samuel",
    "Joseph",
    "Kwame",
    "Tunde",
    "Adam",
    "Luke",
    "Ethan",
)
FAMILY = (
    "Smith",
    "Jones",
    "Taylor",
    "Brown",
    "Williams",
    "Wilson",
    "Johnson",
    "Davies",
    "Robinson",
    "Wright",
    "Thompson",
    "Evans",
    "Walker",
    "White",
    "Roberts",
    "Green",
    "Hall",
    "Wood",
    "Jackson",
    "Clarke",
    "Patel",
    "Khan",
    "Hussain",
    "Ahmed",
    "Begum",
    "Ali",
    "Shah",
    "Singh",
    "Kaur",
    "Mensah",
    "Okafor",
    "Adeyemi",
    "Campbell",
    "Murphy",
    "Kelly",
    "Hughes",
    "Edwards",
    "Turner",
    "Hill",
    "Moore",
    "Cooper",
    "Ward",
    "Morris",
    "King",
    "Watson",
    "Harrison",
    "Morgan",
    "Baker",
    "Young",
    "Allen",
    "Mitchell",
    "Lee",
    "Chen",
    "Nowak",
    "Kowalski",
    "Ferreira",
    "Ibrahim",
    "Yilmaz",
    "Begum",
    "Atkinson",
    "Barker",
    "Booth",
    "Dixon",
    "Fletcher",
    "Holmes",
)


def nhs_numbers(n: int, rng: np.random.Generator) -> np.ndarray:
    """``n`` distinct valid NHS numbers (int64) in the 900 000 0000 - 999 999 9999 test range."""
    out = np.empty(0, dtype=np.int64)
    while out.size < n:
        need = int((n - out.size) * 1.15) + 16
        stems = rng.integers(900_000_000, 1_000_000_000, size=need, dtype=np.int64)
        checks = nhs_check_digits_array(stems)
        numbers = stems[checks >= 0] * 10 + checks[checks >= 0]
        out = np.concatenate([out, numbers])
        _, first = np.unique(out, return_index=True)
        out = out[np.sort(first)]  # drop repeats, keep draw order (deterministic)
    return out[:n]


def lsoas(n_patients: int, rng: np.random.Generator) -> dict[str, np.ndarray]:
    """Areas of ~1,600 residents with an IMD decile and a position from the centre outwards."""
    n = max(8, round(n_patients / 1600))
    decile = np.sort(
        rng.choice(np.arange(1, 11), size=n, p=IMD_DECILE_WEIGHTS / IMD_DECILE_WEIGHTS.sum())
    )
    # Areas spread evenly from the centre outwards, the deprived ones nearer the centre.
    position = np.clip((np.arange(n) + 0.5) / n + rng.normal(0, 0.08, n), 0, 1)
    codes = np.array([f"E0199{i:04d}" for i in range(n)])  # E0199xxxx: beyond any real LSOA
    return {"code": codes, "decile": decile.astype(np.int8), "position": position}


def generate_patients(
    n: int, practice_list: list[Practice], as_of: dt.date, rng: np.random.Generator
) -> dict[str, np.ndarray]:
    """One row per person registered with a practice of the ICB."""
    areas = lsoas(n, rng)
    n_prac = len(practice_list)
    # Practice list sizes vary (lognormal); each person belongs to one practice.
    size_weights = rng.lognormal(0.0, 0.45, n_prac)
    practice_idx = np.sort(rng.choice(n_prac, size=n, p=size_weights / size_weights.sum()))
    # Each practice draws residents from nearby areas.
    prac_pos = np.array([p.location for p in practice_list])
    dist = np.abs(prac_pos[:, None] - areas["position"][None, :])
    affinity = np.exp(-dist / 0.12)
    affinity /= affinity.sum(axis=1, keepdims=True)
    lsoa_idx = np.empty(n, dtype=np.int64)
    counts = np.bincount(practice_idx, minlength=n_prac)
    start = 0
    for p, count in enumerate(counts):
        lsoa_idx[start : start + count] = rng.choice(affinity.shape[1], size=count, p=affinity[p])
        start += count
    decile = areas["decile"][lsoa_idx]

    # Age: England's band shares; deprived areas have fewer older people.
    tilt = np.ones((10, AGE_BAND_SHARES.size))
    tilt[:, 13:] = (0.7 + 0.06 * np.arange(10))[:, None]  # decile 1: x0.7 .. decile 10: x1.24
    band_p = AGE_BAND_SHARES[None, :] * tilt
    band_p /= band_p.sum(axis=1, keepdims=True)
    cum = band_p.cumsum(axis=1)
    u = rng.random(n)
    band = (u[:, None] > cum[decile - 1]).sum(axis=1)
    width = np.where(band == 18, 15, 5)  # 90+ spread over 90-104
    age_years = band * 5 + rng.random(n) * width
    age_days = (age_years * 365.25).astype(np.int64)
    as_of64 = np.datetime64(as_of, "D")
    dob = as_of64 - age_days.astype("timedelta64[D]")

    # Sex: more women at older ages; a handful indeterminate.
    p_female = np.clip(0.49 + np.maximum(age_years - 60, 0) * 0.004, 0.49, 0.66)
    sex = np.where(rng.random(n) < p_female, "F", "M").astype(object)
    sex[rng.random(n) < 0.0003] = "I"

    # Ethnicity: minority groups more common in more deprived areas.
    factor = 1.8 - 0.16 * (decile - 1)
    weights = np.where(
        _MINORITY[None, :], ETHNICITY_BASE[None, :] * factor[:, None], ETHNICITY_BASE
    )
    weights /= weights.sum(axis=1, keepdims=True)
    ethnicity = ETHNICITY_CODES[(rng.random(n)[:, None] > weights.cumsum(axis=1)).sum(axis=1)]

    # Deaths in the last year (Gompertz): kept on the record with their date.
    annual_mortality = np.minimum(np.exp(-10.2 + 0.088 * age_years), 0.5)
    died = rng.random(n) < annual_mortality
    date_of_death = np.full(n, np.datetime64("NaT"), dtype="datetime64[D]")
    date_of_death[died] = as_of64 - rng.integers(0, 365, died.sum()).astype("timedelta64[D]")

    female = sex == "F"
    given = np.where(
        female,
        np.array(GIVEN_F)[rng.integers(0, len(GIVEN_F), n)],
        np.array(GIVEN_M)[rng.integers(0, len(GIVEN_M), n)],
    )
    return {
        "nhs_number": nhs_numbers(n, rng),
        "given_name": given,
        "family_name": np.array(FAMILY)[rng.integers(0, len(FAMILY), n)],
        "date_of_birth": dob,
        "age_years": age_years,  # working column, not written
        "sex": sex.astype(str),
        "ethnicity": ethnicity,
        "lsoa_code": areas["code"][lsoa_idx],
        "imd_decile": decile,
        "practice_idx": practice_idx,  # working column
        "registered_practice": np.array([p.code for p in practice_list])[practice_idx],
        "national_opt_out": rng.random(n) < OPT_OUT_RATE * (1.25 - 0.05 * (decile - 1)),
        "date_of_death": date_of_death,
        "frailty": rng.lognormal(0.0, 0.5, n) * (1 + np.maximum(age_years - 65, 0) / 20),
    }
