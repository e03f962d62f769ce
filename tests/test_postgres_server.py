"""The real PostgreSQL server the suite starts itself: Ibis over TCP, roles/grants, loopback.

These tests prove the fixture in ``tests/fixtures/postgres.py`` gives us a genuine server:
Ibis talks to it over TCP, it enforces privileges (which an embedded engine would not), and it
is reachable from this machine only.
"""

from __future__ import annotations

import socket
from pathlib import Path

import pandas as pd
import psycopg
import pytest

from tests.fixtures import postgres as postgres_fixtures
from tests.fixtures.postgres import PostgresServer

# Expose the session fixture to this module. An assignment rather than
# a plain `from ... import postgres_server`, which trips ruff F811 on every test argument.
postgres_server = postgres_fixtures.postgres_server

EPISODES = pd.DataFrame(
    {
        "provider": ["RXA", "RXA", "RXB", "RXB", "RXB", "RXC"],
        "wait_weeks": [3, 20, 7, 52, 11, 18],
    }
)


def _listening_addresses(port: int) -> set[str]:
    """Local addresses with a TCP socket in LISTEN state on ``port`` (from /proc/net)."""
    found: set[str] = set()
    for table in ("tcp", "tcp6"):
        path = Path("/proc/net") / table
        if not path.exists():
            continue
        for line in path.read_text().splitlines()[1:]:
            local, state = line.split()[1], line.split()[3]
            address, port_hex = local.split(":")
            if state != "0A" or int(port_hex, 16) != port:  # 0A = LISTEN
                continue
            raw = bytes.fromhex(address)
            if table == "tcp":
                found.add(socket.inet_ntop(socket.AF_INET, raw[::-1]))
            else:  # four little-endian 32-bit words
                words = b"".join(raw[i : i + 4][::-1] for i in range(0, 16, 4))
                found.add(socket.inet_ntop(socket.AF_INET6, words))
    return found


def _non_loopback_ipv4() -> str | None:
    """This machine's outward-facing IPv4 address, if it has one (no packet is sent)."""
    with socket.socket(socket.AF_INET, socket.SOCK_DGRAM) as sock:
        try:
            sock.connect(("192.0.2.1", 9))  # TEST-NET-1: routing lookup only
        except OSError:
            return None
        address = sock.getsockname()[0]
    return None if address.startswith("127.") else address


def test_ibis_round_trip_over_tcp(postgres_server: PostgresServer) -> None:
    """Ibis connects over TCP, creates a table from pandas, aggregates and reads it back."""
    database = postgres_server.create_database("ibis_round_trip")
    con = postgres_server.connect_ibis(database=database)
    try:
        server_addr = con.sql("SELECT inet_server_addr()::text AS addr").to_pandas()["addr"][0]
        assert server_addr == "127.0.0.1/32"  # NULL if we had come in over a Unix socket

        episodes = con.create_table("episodes", EPISODES)
        assert "episodes" in con.list_tables()

        # AVG over an integer column is `numeric` in PostgreSQL: cast first, or to_pyarrow()
        # fails converting Decimal to double.
        summary = (
            episodes.group_by("provider")
            .aggregate(
                n=episodes.count(),
                total=episodes.wait_weeks.sum(),
                mean=episodes.wait_weeks.cast("float64").mean(),
            )
            .order_by("provider")
        )
        got = summary.to_pandas()
        assert got["provider"].tolist() == ["RXA", "RXB", "RXC"]
        assert got["n"].tolist() == [2, 3, 1]
        assert got["total"].tolist() == [23, 70, 18]
        assert got["mean"].tolist() == pytest.approx([11.5, 70 / 3, 18.0])
        assert summary.to_pyarrow().num_rows == 3

        back = episodes.order_by(["provider", "wait_weeks"]).to_pandas()
        expected = EPISODES.sort_values(["provider", "wait_weeks"]).reset_index(drop=True)
        pd.testing.assert_frame_equal(back, expected, check_dtype=False)
    finally:
        con.disconnect()


def test_roles_and_grants_are_enforced(postgres_server: PostgresServer) -> None:
    """A login role without a grant gets "permission denied"; after GRANT SELECT it reads."""
    database = postgres_server.create_database("grants")
    postgres_server.psql("CREATE TABLE secret (nhs_number text, wait_weeks int)", database=database)
    postgres_server.psql("INSERT INTO secret VALUES ('9434765919', 12)", database=database)
    postgres_server.psql("CREATE ROLE analyst LOGIN")
    assert postgres_server.psql("SELECT rolsuper FROM pg_roles WHERE rolname = 'analyst'") == [
        (False,)
    ]

    con = postgres_server.connect_ibis(user="analyst", database=database)
    try:
        assert con.sql("SELECT current_user AS u").to_pandas()["u"][0] == "analyst"
        secret = con.table("secret")  # the catalog is readable; the rows are not
        with pytest.raises(psycopg.errors.InsufficientPrivilege, match="permission denied"):
            secret.to_pandas()

        postgres_server.psql("GRANT SELECT ON secret TO analyst", database=database)
        rows = secret.to_pandas()
        assert rows.to_dict("records") == [{"nhs_number": "9434765919", "wait_weeks": 12}]
    finally:
        con.disconnect()


def test_listens_on_loopback_only(postgres_server: PostgresServer) -> None:
    """The server is bound to 127.0.0.1 alone: nothing off this machine can reach it."""
    assert postgres_server.host == "127.0.0.1"
    assert postgres_server.psql("SHOW listen_addresses") == [("127.0.0.1",)]

    listening = _listening_addresses(postgres_server.port)
    if listening:  # /proc/net is Linux-only
        assert listening == {"127.0.0.1"}

    if (outward := _non_loopback_ipv4()) is not None:
        with pytest.raises(ConnectionRefusedError):
            socket.create_connection((outward, postgres_server.port), timeout=2).close()
