"""Synthetic federation generator: one DuckDB store per organisation plus the federation file.

``generate_federation`` builds the demo ICB (three acute trusts, a community provider, a local
authority and ~40 GP practices at 100k patients) from one seed. The same seed and size give
identical data. See DOMAIN.md for the realism targets each part aims at.
"""

from __future__ import annotations

import datetime as dt
import os
import tempfile
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import yaml

from fdp_kernel.config import AUDIT_KEY, FEDERATION_FILE, SCHEMA_VERSION
from fdp_kernel.errors import StoreError, UsageError
from fdp_kernel.governance.audit import MANIFEST, AuditEvent, AuditLog
from fdp_kernel.governance.keys import create_key, read_key
from fdp_kernel.governance.policy import identify
from fdp_kernel.progress import Progress, Silent
from fdp_kernel.stores import write_store
from fdp_kernel.synth import conditions, elective, inpatient, orgs, population, supply, vaccination
from fdp_kernel.synth.nodes import NodeTables
from fdp_kernel.synth.policy import SHARED_KEY_AGREEMENTS, policy
from fdp_kernel.synth.rng import Streams
from fdp_kernel.version import __version__

DEFAULT_AS_OF = dt.date(2026, 10, 31)
DEFAULT_PATIENTS = 100_000
DEFAULT_SEED = 42
MIN_PATIENTS = 200
MAX_PATIENTS = 50_000_000
STORES_DIR = "stores"
KEYS_DIR = "keys"


@dataclass
class FederationSummary:
    path: Path
    organisations: int
    rows: dict[str, int] = field(default_factory=dict)


def check_arguments(out_dir: Path, patients: int, force: bool) -> None:
    """Fail before any work: bad size, unwritable folder, or stores that would be overwritten."""
    if not isinstance(patients, int) or not MIN_PATIENTS <= patients <= MAX_PATIENTS:
        raise UsageError(
            f"--patients must be a whole number from {MIN_PATIENTS:,} to {MAX_PATIENTS:,} "
            f"(got {patients!r})"
        )
    out_dir = Path(out_dir)
    try:  # try it for real: permission checks alone are wrong for root and read-only mounts
        (out_dir / STORES_DIR).mkdir(parents=True, exist_ok=True)
        with tempfile.NamedTemporaryFile(dir=out_dir / STORES_DIR, prefix=".probe-"):
            pass
    except OSError as exc:
        raise StoreError(
            f"cannot write to {out_dir} ({exc.strerror or exc}). "
            "Choose another --out or fix the folder's permissions"
        ) from None
    existing = [out_dir / FEDERATION_FILE, *sorted((out_dir / STORES_DIR).glob("*.duckdb"))]
    existing = [p for p in existing if p.exists()]
    if existing and not force:
        raise StoreError(
            f"{out_dir} already holds a federation ({len(existing)} files, e.g. {existing[0]}). "
            "Pass --force to replace it, or choose another --out"
        )


def generate_federation(
    out_dir: str | Path,
    *,
    patients: int = DEFAULT_PATIENTS,
    seed: int = DEFAULT_SEED,
    as_of: dt.date = DEFAULT_AS_OF,
    force: bool = False,
    progress: Progress | None = None,
    workers: int = 2,
    operator: str | None = None,
) -> FederationSummary:
    """Generate the federation; ``operator`` (default: the user running this) gets the demo
    roles at every organisation so that every report can run."""
    out_dir = Path(out_dir)
    progress = progress or Silent()
    check_arguments(out_dir, patients, force)
    streams = Streams(seed)

    progress.step(f"generating {patients:,} patients (seed {seed}, as of {as_of})")
    practice_list = orgs.practices(orgs.n_practices_for(patients), streams.get("practices"))
    org_list = orgs.organisations(practice_list)
    people = population.generate_patients(patients, practice_list, as_of, streams.get("patients"))
    registers = conditions.generate_registers(people, as_of, streams.get("ltc_registers"))
    progress.step("generating elective pathways and outpatient appointments")
    rtt = elective.generate_pathways(people, practice_list, as_of, streams.get("rtt"))
    rtt_extra, appointments = elective.generate_appointments(
        people, rtt, as_of, streams.get("outpatients")
    )
    rtt.update(rtt_extra)
    progress.step("generating inpatient spells, bed occupancy and care packages")
    spells = inpatient.generate_spells(people, practice_list, rtt, as_of, streams.get("spells"))
    beds = inpatient.bed_occupancy(spells, as_of, streams.get("beds"))
    packages = inpatient.care_packages(spells, streams.get("care_packages"))
    progress.step("generating vaccinations")
    vaccinations = vaccination.generate_vaccinations(
        people, registers, as_of, streams.get("vaccinations")
    )
    progress.step("simulating supply chain stock and orders")
    products = supply.products(streams.get("products"))
    mean_beds = np.array(
        [beds["occupied"][beds["trust"] == t].mean() for t in range(len(orgs.ACUTE_TRUSTS))]
    )
    stock, consumption, orders, receipts = supply.simulate(
        products, np.maximum(mean_beds, 10), as_of, streams.get("supply")
    )

    nodes = NodeTables(
        org_list,
        practice_list,
        people,
        registers,
        rtt,
        appointments,
        spells,
        beds,
        packages,
        vaccinations,
        products,
        stock,
        consumption,
        orders,
        receipts,
    )
    stores_dir = out_dir / STORES_DIR
    stores_dir.mkdir(parents=True, exist_ok=True)
    summary = FederationSummary(path=out_dir / FEDERATION_FILE, organisations=len(org_list))
    meta_base = {
        "seed": str(seed),
        "as_of": as_of.isoformat(),
        "patients": str(patients),
        "generator": f"fdp {__version__} synth",
        "synthetic": "true",
    }

    def write(org: orgs.Org) -> dict[str, int]:
        tables = nodes.for_org(org)
        meta = {**meta_base, "org_code": org.code, "org_type": org.org_type}
        write_store(stores_dir / f"{org.code}.duckdb", tables, meta, force=True)
        return {ds.name: t.num_rows for ds, t in tables.items()}

    progress.step(f"writing {len(org_list)} node stores to {stores_dir}")
    done = 0
    with ThreadPoolExecutor(max_workers=max(1, workers)) as pool:
        for counts in pool.map(write, org_list):
            done += 1
            progress.count("stores written", done, len(org_list))
            for name, n in counts.items():
                if name not in ("organisations", "gp_practices", "products"):
                    summary.rows[name] = summary.rows.get(name, 0) + n
    for org in org_list:
        create_key(out_dir / KEYS_DIR / f"{org.code}.key", force=True)
    for agreement in SHARED_KEY_AGREEMENTS:
        create_key(out_dir / KEYS_DIR / "agreements" / f"{agreement}.key", force=True)
    audit_key = out_dir / KEYS_DIR / AUDIT_KEY
    if not audit_key.exists():  # kept across regenerations: the audit so far still verifies
        create_key(audit_key)
    operator = operator or identify(os.environ)
    _write_federation_file(out_dir, org_list, seed, as_of, patients, operator)
    _start_audit(out_dir, read_key(audit_key, owner="the audit chain"))
    progress.step(f"federation file written: {summary.path}")
    return summary


def _start_audit(out_dir: Path, key: bytes) -> None:
    """The audit folder's manifest, so that a federation always has one to verify against."""
    manifest = AuditLog(out_dir / "audit" / MANIFEST, key)
    if not manifest.path.exists():
        event = AuditEvent("federation", "allow", "fdp", "-", reason="federation created")
        manifest.append(event)


class _PlainDumper(yaml.SafeDumper):
    """Writes repeated lists out in full (no &anchors), so people can read each entry."""

    def ignore_aliases(self, data) -> bool:
        return True


def _write_federation_file(out_dir: Path, org_list, seed, as_of, patients, operator):
    doc = {
        "version": SCHEMA_VERSION,
        "federation": {
            "name": f"{orgs.ICB[1]} (synthetic demo)",
            "synthetic": True,
            "as_of": as_of,
            "seed": seed,
            "patients": patients,
        },
        "organisations": [
            {
                "code": o.code,
                "name": o.name,
                "type": o.org_type,
                **({"parent_icb": o.parent_icb} if o.parent_icb else {}),
                "store": f"{STORES_DIR}/{o.code}.duckdb",
                "key": f"{KEYS_DIR}/{o.code}.key",
            }
            for o in org_list
        ],
        **policy(org_list, operator, as_of),
    }
    tmp = out_dir / (FEDERATION_FILE + ".partial")
    header = "# Synthetic federation written by `fdp synth`. Every person in it is fictitious.\n"
    text = yaml.dump(doc, Dumper=_PlainDumper, sort_keys=False, allow_unicode=True)
    tmp.write_text(header + text, encoding="utf-8")
    os.replace(tmp, out_dir / FEDERATION_FILE)


__all__ = ["DEFAULT_AS_OF", "FederationSummary", "generate_federation"]
