"""Which rows each node holds: practices hold their registered lists, registers and
vaccinations; trusts their pathways, appointments, spells, beds and supplies; the community
provider its school immunisations; the local authority its care packages. Everyone holds the
organisation reference tables.
"""

from __future__ import annotations

import numpy as np
import pyarrow as pa

from fdp_kernel.catalog import CATALOG, Dataset
from fdp_kernel.synth.orgs import (
    ACUTE_TRUSTS,
    COMMUNITY,
    LOCAL_AUTHORITY,
    ORG_EFFECTIVE_FROM,
    REGION,
)
from fdp_kernel.synth.tables import ids, split, table


class NodeTables:
    def __init__(
        self,
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
    ) -> None:
        self.people = people
        self.registers = registers
        self.rtt = rtt
        self.appointments = appointments
        self.spells = spells
        self.beds = beds
        self.packages = packages
        self.vaccinations = vaccinations
        self.products = products
        self.supply = {
            "stock": stock,
            "consumption": consumption,
            "orders": orders,
            "receipts": receipts,
        }
        self.practice_index = {p.code: i for i, p in enumerate(practice_list)}
        self.trust_index = {code: i for i, (code, *_) in enumerate(ACUTE_TRUSTS)}
        self.trust_codes = np.array([t[0] for t in ACUTE_TRUSTS])
        self.nhs = pa.array(people["nhs_number"]).cast(pa.string())
        n_prac, n_trust = len(practice_list), len(ACUTE_TRUSTS)
        practice_of = people["practice_idx"]
        self._split = {
            "patients": split(practice_of, n_prac),
            "ltc": split(practice_of[registers["person"]], n_prac),
            "vax_practice": split(
                np.where(
                    vaccinations["giver"] == "practice", practice_of[vaccinations["person"]], n_prac
                ),
                n_prac + 1,
            ),
            "rtt": split(rtt["trust"], n_trust),
            "op": split(appointments["trust"], n_trust),
            "spells": split(spells["trust"], n_trust),
            "beds": split(beds["trust"], n_trust),
            **{k: split(v["trust"], n_trust) for k, v in self.supply.items()},
        }
        self.reference = self._reference(org_list, practice_list)

    # -- reference data -------------------------------------------------------------------
    def _reference(self, org_list, practice_list) -> dict[Dataset, pa.Table]:
        # Each practice's surgery sits in the area most of its patients live in.
        lsoa = self.people["lsoa_code"]
        surgery = [lsoa[idx][0] if idx.size else None for idx in self._split["patients"]]
        return {
            CATALOG["organisations"]: table(
                "organisations",
                {
                    "org_code": np.array([o.code for o in org_list]),
                    "name": np.array([o.name for o in org_list]),
                    "org_type": np.array([o.org_type for o in org_list]),
                    "parent_icb": np.array([o.parent_icb for o in org_list], dtype=object),
                    "region_code": REGION,
                    "effective_from": np.full(
                        len(org_list), np.datetime64(ORG_EFFECTIVE_FROM, "D")
                    ),
                    "effective_to": np.full(
                        len(org_list), np.datetime64("NaT"), dtype="datetime64[D]"
                    ),
                },
            ),
            CATALOG["gp_practices"]: table(
                "gp_practices",
                {
                    "practice_code": np.array([p.code for p in practice_list]),
                    "name": np.array([p.name for p in practice_list]),
                    "pcn_code": np.array([p.pcn_code for p in practice_list]),
                    "icb_code": org_list[0].code,
                    "lsoa_code": np.array(surgery, dtype=object),
                },
            ),
        }

    # -- per organisation -----------------------------------------------------------------
    def for_org(self, org) -> dict[Dataset, pa.Table]:
        tables = dict(self.reference)
        if org.org_type == "gp_practice":
            i = self.practice_index[org.code]
            tables[CATALOG["patients"]] = self._patients(org.code, self._split["patients"][i])
            tables[CATALOG["ltc_registers"]] = self._ltc(org.code, self._split["ltc"][i])
            tables[CATALOG["vaccinations"]] = self._vaccinations(
                org.code, self._split["vax_practice"][i]
            )
        elif org.org_type == "acute_trust":
            tables.update(self._trust(org.code, self.trust_index[org.code]))
        elif org.code == COMMUNITY[0]:
            rows = np.flatnonzero(self.vaccinations["giver"] == "community")
            tables[CATALOG["patients"]] = self._patients(
                org.code, self.vaccinations["person"][rows]
            )
            tables[CATALOG["vaccinations"]] = self._vaccinations(org.code, rows)
        elif org.code == LOCAL_AUTHORITY[0]:
            tables[CATALOG["patients"]] = self._patients(org.code, self.packages["person"])
            tables[CATALOG["care_packages"]] = self._packages(org.code)
        return tables

    def _patients(self, code: str, person: np.ndarray) -> pa.Table:
        person = np.unique(person)
        p = self.people
        cols = {
            k: p[k]
            for k in (
                "given_name",
                "family_name",
                "date_of_birth",
                "sex",
                "ethnicity",
                "lsoa_code",
                "imd_decile",
                "registered_practice",
                "national_opt_out",
                "date_of_death",
            )
        }
        return table("patients", {"org_code": code, "nhs_number": self.nhs, **cols}, person)

    def _ltc(self, code: str, rows: np.ndarray) -> pa.Table:
        r = self.registers
        return table(
            "ltc_registers",
            {
                "org_code": code,
                "nhs_number": self.nhs.take(pa.array(r["person"][rows])),
                "condition": r["condition"][rows],
                "diagnosis_date": r["diagnosis_date"][rows],
            },
        )

    def _vaccinations(self, code: str, rows: np.ndarray) -> pa.Table:
        v = self.vaccinations
        programme_product = {
            "flu": "SYN-FLU",
            "covid": "SYN-COV",
            "childhood": "SYN-CHD",
            "school": "SYN-SCH",
        }
        return table(
            "vaccinations",
            {
                "org_code": code,
                "vaccination_id": ids("V", rows, 10),
                "nhs_number": self.nhs.take(pa.array(v["person"][rows])),
                "vaccination_date": v["date"][rows],
                "programme": v["programme"][rows],
                "procedure_code": v["procedure"][rows],
                "dose_sequence": v["dose"][rows],
                "vaccine_product_code": np.vectorize(programme_product.get)(v["programme"][rows])
                if rows.size
                else np.array([], dtype=str),
                "batch_number": np.char.add("B", (rows % 97 + 1000).astype(str)),
                "site_of_vaccination_code": v["site"][rows],
                "route_code": v["route"][rows],
            },
        )

    def _packages(self, code: str) -> pa.Table:
        c = self.packages
        return table(
            "care_packages",
            {
                "org_code": code,
                "package_id": ids("CP", np.arange(c["person"].size)),
                "nhs_number": self.nhs.take(pa.array(c["person"])),
                "referring_org_code": self.trust_codes[c["trust"]],
                "referral_date": c["referral_date"],
                "start_date": c["start_date"],
                "service_type": c["service_type"],
                "discharge_pathway": c["discharge_pathway"],
            },
        )

    def _trust(self, code: str, t: int) -> dict[Dataset, pa.Table]:
        rtt, op, sp, beds = self.rtt, self.appointments, self.spells, self.beds
        r, o, s, b = (self._split[k][t] for k in ("rtt", "op", "spells", "beds"))
        pathway_ids = ids(f"{code}P", np.arange(rtt["person"].size))
        rtt_cols = {
            k: rtt[k]
            for k in (
                "referral_received_date",
                "rtt_start_date",
                "rtt_end_date",
                "waiting_list_type",
                "treatment_function_code",
                "priority_type_code",
                "clinical_priority",
                "source_of_referral",
                "intended_management_code",
                "decision_to_admit_date",
                "tci_date",
                "outpatient_future_appointment_date",
                "date_last_attended",
                "last_pas_validation_date",
                "rtt_period_status",
                "removed_by_validation",
            )
        }
        s_cols = {
            k: sp[k]
            for k in (
                "admission_date",
                "discharge_date",
                "admission_method",
                "treatment_function_code",
                "discharge_ready_date",
                "discharge_pathway",
                "nctr_reason",
                "died_in_hospital",
            )
        }
        patients = np.concatenate([rtt["person"][r], op["person"][o], sp["person"][s]])
        tables = {
            CATALOG["patients"]: self._patients(code, patients),
            CATALOG["rtt_pathways"]: table(
                "rtt_pathways",
                {
                    "org_code": code,
                    "pathway_id": pathway_ids,
                    "nhs_number": self.nhs.take(pa.array(rtt["person"])),
                    **rtt_cols,
                },
                r,
            ),
            CATALOG["outpatient_appointments"]: table(
                "outpatient_appointments",
                {
                    "org_code": code,
                    "appointment_id": ids(f"{code}A", np.arange(op["person"].size)),
                    "nhs_number": self.nhs.take(pa.array(op["person"])),
                    "pathway_id": pathway_ids.take(pa.array(op["pathway"])),
                    **{
                        k: op[k]
                        for k in (
                            "appointment_date",
                            "treatment_function_code",
                            "first_attendance",
                            "attendance_status",
                            "moved_to_pifu",
                        )
                    },
                },
                o,
            ),
            CATALOG["inpatient_spells"]: table(
                "inpatient_spells",
                {
                    "org_code": code,
                    "spell_id": ids(f"{code}S", np.arange(sp["person"].size)),
                    "nhs_number": self.nhs.take(pa.array(sp["person"])),
                    **s_cols,
                },
                s,
            ),
            CATALOG["bed_occupancy"]: table(
                "bed_occupancy",
                {
                    "org_code": code,
                    "date": beds["date"],
                    "ga_beds_available": beds["available"],
                    "ga_beds_occupied": beds["occupied"],
                },
                b,
            ),
        }
        tables.update(self._supply(code, t))
        return tables

    def _supply(self, code: str, t: int) -> dict[Dataset, pa.Table]:
        pr = self.products
        out = {
            CATALOG["products"]: table(
                "products", {k: pr[k] for k in CATALOG["products"].column_names}
            )
        }
        for name, key in (
            ("stock_levels", "stock"),
            ("consumption", "consumption"),
            ("purchase_orders", "orders"),
            ("receipts", "receipts"),
        ):
            cols = dict(self.supply[key])
            cols["org_code"] = code
            out[CATALOG[name]] = table(name, cols, self._split[key][t])
        return out
