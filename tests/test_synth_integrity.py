"""Generator determinism and referential integrity on a small federation."""

from __future__ import annotations

import duckdb
import pytest

from fdp_kernel.catalog import CATALOG, datasets_held_by
from fdp_kernel.config import load_federation
from fdp_kernel.identifiers import is_valid_gtin, is_valid_nhs_number
from fdp_kernel.stores import read_meta
from fdp_kernel.synth import generate_federation
from tests.helpers import query


def _contents(store):
    """Every catalogue table of a store, sorted by primary key."""
    con = duckdb.connect(str(store), read_only=True)
    try:
        out = {}
        for (name,) in con.execute("SELECT table_name FROM information_schema.tables").fetchall():
            if name in CATALOG:
                keys = ", ".join(CATALOG[name].primary_key)
                out[name] = con.execute(f"SELECT * FROM {name} ORDER BY {keys}").to_arrow_table()
        return out
    finally:
        con.close()


def test_same_seed_gives_identical_data_and_another_seed_does_not(tmp_path):
    a = generate_federation(tmp_path / "a", patients=1_500, seed=11).path.parent
    b = generate_federation(tmp_path / "b", patients=1_500, seed=11).path.parent
    c = generate_federation(tmp_path / "c", patients=1_500, seed=12).path.parent
    stores_a = sorted(p.name for p in (a / "stores").glob("*.duckdb"))
    assert stores_a == sorted(p.name for p in (b / "stores").glob("*.duckdb"))
    assert (a / "federation.yaml").read_text() == (b / "federation.yaml").read_text()
    for name in stores_a:
        ta, tb = _contents(a / "stores" / name), _contents(b / "stores" / name)
        assert ta.keys() == tb.keys()
        for table in ta:
            assert ta[table].equals(tb[table]), f"{name}:{table} differs for the same seed"
    trust = "RSA.duckdb"
    assert not _contents(a / "stores" / trust)["rtt_pathways"].equals(
        _contents(c / "stores" / trust)["rtt_pathways"]
    )


def test_federation_file_lists_every_store_with_its_metadata(small_federation):
    fed = load_federation(small_federation)
    assert fed.synthetic and fed.seed == 7
    types = sorted(o.org_type for o in fed.organisations.values())
    assert types.count("acute_trust") >= 3
    assert {"icb", "community_trust", "local_authority", "gp_practice"} <= set(types)
    for org in fed.organisations.values():
        meta = read_meta(org.store)
        assert meta["org_code"] == org.code and meta["org_type"] == org.org_type
        con = duckdb.connect(str(org.store), read_only=True)
        tables = {
            r[0] for r in con.execute("SELECT table_name FROM information_schema.tables").fetchall()
        }
        con.close()
        assert tables - {"_fdp_meta"} == {d.name for d in datasets_held_by(org.org_type)}


def _trusts(fed):
    return fed.orgs_of_type("acute_trust")


def _orphans(store, child: str, column: str, parent: str, parent_column: str) -> int:
    return query(
        store,
        f"SELECT count(*) FROM {child} c WHERE c.{column} IS NOT NULL AND NOT EXISTS "
        f"(SELECT 1 FROM {parent} p WHERE p.{parent_column} = c.{column})",
    )[0][0]


def test_every_trust_record_points_at_a_known_patient_and_product(small_federation):
    fed = load_federation(small_federation)
    for org in _trusts(fed):
        s = org.store
        assert query(s, "SELECT count(*) FROM inpatient_spells")[0][0] > 0
        for child in ("rtt_pathways", "outpatient_appointments", "inpatient_spells"):
            assert _orphans(s, child, "nhs_number", "patients", "nhs_number") == 0, child
        assert (
            _orphans(s, "outpatient_appointments", "pathway_id", "rtt_pathways", "pathway_id") == 0
        )
        for child in ("purchase_orders", "stock_levels", "consumption"):
            assert _orphans(s, child, "npc", "products", "npc") == 0, child
        unmatched_receipts = query(
            s,
            "SELECT count(*) FROM receipts r LEFT JOIN purchase_orders o "
            "USING (po_number, po_line) WHERE o.po_number IS NULL",
        )[0][0]
        assert unmatched_receipts == 0
        assert _orphans(s, "patients", "registered_practice", "gp_practices", "practice_code") == 0
        over = query(
            s,
            "SELECT count(*) FROM (SELECT po_number, po_line, sum(quantity_received) q "
            "FROM receipts GROUP BY ALL) r JOIN purchase_orders o USING (po_number, po_line) "
            "WHERE r.q > o.quantity",
        )[0][0]
        assert over == 0, "received more than ordered"


def test_practice_community_and_local_authority_records_point_at_their_patients(small_federation):
    fed = load_federation(small_federation)
    for org in fed.organisations.values():
        if org.org_type in ("gp_practice", "community_trust"):
            assert _orphans(org.store, "vaccinations", "nhs_number", "patients", "nhs_number") == 0
        if org.org_type == "gp_practice":
            assert _orphans(org.store, "ltc_registers", "nhs_number", "patients", "nhs_number") == 0
        if org.org_type == "local_authority":
            assert _orphans(org.store, "care_packages", "nhs_number", "patients", "nhs_number") == 0


def test_identifiers_are_valid_and_recognisably_synthetic(small_federation):
    fed = load_federation(small_federation)
    practice = fed.orgs_of_type("gp_practice")[0].store
    numbers = [r[0] for r in query(practice, "SELECT nhs_number FROM patients")]
    assert numbers and all(is_valid_nhs_number(n) and n.startswith("9") for n in numbers)
    trust = _trusts(fed)[0].store
    gtins = [r[0] for r in query(trust, "SELECT gtin FROM products")]
    assert gtins and all(len(g) == 13 and is_valid_gtin(g) for g in gtins)


def test_dates_are_consistent(small_federation):
    fed = load_federation(small_federation)
    as_of = fed.as_of
    for org in _trusts(fed):
        s = org.store
        checks = {
            "discharge before admission": "SELECT count(*) FROM inpatient_spells "
            "WHERE discharge_date < admission_date",
            "ready before admission": "SELECT count(*) FROM inpatient_spells "
            "WHERE discharge_ready_date < admission_date",
            "ready after discharge": "SELECT count(*) FROM inpatient_spells "
            "WHERE discharge_ready_date > discharge_date",
            "clock stop before start": "SELECT count(*) FROM rtt_pathways "
            "WHERE rtt_end_date < rtt_start_date",
            "activity after the as-of date": "SELECT count(*) FROM rtt_pathways "
            "WHERE rtt_start_date > ? OR rtt_end_date > ?",
            "occupied beyond available": "SELECT count(*) FROM bed_occupancy "
            "WHERE ga_beds_occupied > ga_beds_available",
            "receipt before order": "SELECT count(*) FROM receipts JOIN purchase_orders "
            "USING (po_number, po_line) WHERE receipt_date < order_date",
            "referral before birth": "SELECT count(*) FROM rtt_pathways JOIN patients "
            "USING (nhs_number) WHERE referral_received_date < date_of_birth",
            "appointment before birth": "SELECT count(*) FROM outpatient_appointments JOIN "
            "patients USING (nhs_number) WHERE appointment_date < date_of_birth",
            "admission before birth": "SELECT count(*) FROM inpatient_spells JOIN patients "
            "USING (nhs_number) WHERE admission_date < date_of_birth",
        }
        for what, sql in checks.items():
            params = [as_of, as_of] if "?" in sql else None
            assert query(s, sql, params)[0][0] == 0, f"{org.code}: {what}"
        died = query(
            s,
            "SELECT count(*) FROM inpatient_spells s JOIN patients p USING (nhs_number) "
            "WHERE s.died_in_hospital AND (p.date_of_death IS NULL "
            "OR p.date_of_death <> s.discharge_date)",
        )[0][0]
        assert died == 0, "a death in hospital must match the patient's date of death"


def test_stores_are_written_whole_or_not_at_all(tmp_path, monkeypatch):
    from fdp_kernel import stores

    original = stores.create_table_sql
    calls = {"n": 0}

    def failing(ds):
        calls["n"] += 1
        if calls["n"] == 5:
            raise RuntimeError("disk full")
        return original(ds)

    monkeypatch.setattr(stores, "create_table_sql", failing)
    with pytest.raises(RuntimeError):
        generate_federation(tmp_path, patients=300, seed=1, workers=1)
    finished = list((tmp_path / "stores").glob("*.duckdb"))
    # Only stores written before the failure exist, each complete; no federation file yet.
    for store in finished:
        assert read_meta(store)["org_code"]
    assert not (tmp_path / "federation.yaml").exists()
