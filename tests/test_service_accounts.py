"""The node service as deployed: it runs as its own OS account (``fdp-node``), which alone can
read the stores and keys and write the audit; an analyst's kernel runs as another
(``fdp-analyst``) and gets nothing but released results, whatever it does to its own
``fdp_kernel`` modules, workspace or environment.

The fixture creates both accounts (the suite runs as root in CI; elsewhere it skips, saying
why), gives the federation to ``fdp-node`` with owner-only modes, starts ``fdp serve`` as
``fdp-node`` and runs the attempts below as ``fdp-analyst`` in a fresh Python process.
"""

from __future__ import annotations

import json
import os
import pwd
import shutil
import stat
import subprocess
import sys
import tempfile
import textwrap
import time
from pathlib import Path

import pytest
import yaml

from fdp_kernel.synth import generate_federation
from tests.conftest import OPERATOR
from tests.fixtures.postgres import _ci

NODE, ANALYST = "fdp-node", "fdp-analyst"
REPO = Path(__file__).resolve().parents[1]


def _skip_or_fail(reason: str):
    if _ci():
        pytest.fail(f"the service account tests cannot run in CI: {reason}")
    print(f"\nskipping service account tests: {reason}")
    pytest.skip(reason)


def _ensure_account(name: str) -> pwd.struct_passwd:
    try:
        return pwd.getpwnam(name)
    except KeyError:
        subprocess.run(
            ["useradd", "--system", "--no-create-home", "--shell", "/usr/sbin/nologin", name],
            check=True,
        )
        return pwd.getpwnam(name)


def _traversable(paths: list[Path]) -> list[tuple[Path, int]]:
    """Give others search (x) on every folder above ``paths`` that lacks it, so the two
    accounts can run this Python and import this checkout; returns what to restore."""
    changed = []
    for path in paths:
        for folder in [path, *path.parents] if path.is_dir() else path.parents:
            mode = folder.stat().st_mode
            if not mode & stat.S_IXOTH:
                changed.append((folder, stat.S_IMODE(mode)))
                folder.chmod(stat.S_IMODE(mode) | stat.S_IXOTH)
    return changed


def _own(path: Path, account: pwd.struct_passwd, folder_mode: int, file_mode: int) -> None:
    for root, _dirs, files in os.walk(path):
        os.chown(root, account.pw_uid, account.pw_gid)
        os.chmod(root, folder_mode)
        for name in files:
            full = os.path.join(root, name)
            os.chown(full, account.pw_uid, account.pw_gid)
            os.chmod(full, file_mode)


def _python() -> str:
    return sys.executable


@pytest.fixture(scope="module")
def deployed():
    if os.geteuid() != 0:
        _skip_or_fail("creating OS accounts and running as them needs root")
    if shutil.which("useradd") is None:
        _skip_or_fail("useradd is missing")
    node, analyst = _ensure_account(NODE), _ensure_account(ANALYST)
    restore = _traversable([Path(_python()).resolve(), REPO])
    base = Path(tempfile.mkdtemp(prefix="fdp-accounts-", dir="/tmp"))
    base.chmod(0o755)
    fed = base / "fed"
    generate_federation(fed, patients=2_000, seed=5, operator=OPERATOR)
    doc = yaml.safe_load((fed / "federation.yaml").read_text())
    doc["users"].append(
        {
            "id": "fdp.analyst",
            "accounts": [ANALYST],
            "roles": [{"org": "RSA", "purposes": ["elective_planning"]}],
        }
    )
    (fed / "federation.yaml").write_text(yaml.safe_dump(doc, sort_keys=False))
    _own(fed, node, 0o700, 0o600)
    run = base / "run"
    run.mkdir(mode=0o755)
    os.chown(run, node.pw_uid, node.pw_gid)
    home = base / "home"
    home.mkdir(mode=0o755)
    os.chown(home, analyst.pw_uid, analyst.pw_gid)
    env = {"PATH": os.environ.get("PATH", "/usr/bin:/bin"), "HOME": str(base)}
    server = subprocess.Popen(
        [
            _python(),
            "-m",
            "fdp_kernel.cli",
            "serve",
            "--federation",
            str(fed),
            "--socket-dir",
            str(run),
        ],
        user=NODE,
        group=node.pw_gid,
        env=env,
        cwd=str(base),
        stderr=subprocess.PIPE,
        text=True,
    )
    deadline = time.time() + 90
    while not (run / "ident.sock").exists():
        if server.poll() is not None or time.time() > deadline:
            server.kill()
            pytest.fail(f"fdp serve did not start as {NODE}: {server.stderr.read()}")
        time.sleep(0.2)
    yield {"base": base, "fed": fed, "run": run, "home": home, "server": server}
    server.terminate()
    server.wait(timeout=30)
    shutil.rmtree(base, ignore_errors=True)
    for folder, mode in reversed(restore):
        folder.chmod(mode)


def as_analyst(deployed, code: str) -> dict:
    """Run ``code`` as fdp-analyst with FDP_SERVICE set (and a forged JUPYTERHUB_USER); it
    prints one JSON object."""
    script = deployed["home"] / f"attempt_{time.monotonic_ns()}.py"
    script.write_text(textwrap.dedent(code))
    script.chmod(0o644)
    env = {
        "PATH": os.environ.get("PATH", "/usr/bin:/bin"),
        "HOME": str(deployed["home"]),
        "FDP_SERVICE": str(deployed["run"]),
        "JUPYTERHUB_USER": OPERATOR,  # an identity claim; the service reads the socket instead
        "FDP_FEDERATION": str(deployed["fed"]),  # a path the analyst cannot read
    }
    done = subprocess.run(
        [_python(), str(script)],
        user=ANALYST,
        group=pwd.getpwnam(ANALYST).pw_gid,
        env=env,
        cwd=str(deployed["home"]),
        capture_output=True,
        text=True,
        timeout=300,
    )
    assert done.returncode == 0, done.stderr
    return json.loads(done.stdout.strip().splitlines()[-1])


def audit_entries(deployed, org: str = "RSA") -> list[dict]:
    path = deployed["fed"] / "audit" / f"{org}.jsonl"
    return [json.loads(line) for line in path.read_text().splitlines()]


def test_the_analyst_cannot_open_stores_keys_or_the_audit(deployed):
    fed = deployed["fed"]
    targets = [
        fed / "stores" / "RSA.duckdb",
        fed / "keys" / "RSA.key",
        fed / "keys" / "audit.key",
        fed / "audit" / "RSA.jsonl",
        fed / "federation.yaml",
    ]
    got = as_analyst(
        deployed,
        f"""
        import json
        out = {{}}
        for path in {[str(t) for t in targets]!r}:
            try:
                open(path, "rb").read(1)
                out[path] = "read"
            except PermissionError:
                out[path] = "refused"
        try:
            open({str(fed / "audit" / "forged.jsonl")!r}, "w").write("x")
            out["write audit"] = "written"
        except PermissionError:
            out["write audit"] = "refused"
        print(json.dumps(out))
        """,
    )
    assert set(got.values()) == {"refused"}, got


def test_identity_and_policy_hold_whatever_the_kernel_does_to_itself(deployed):
    got = as_analyst(
        deployed,
        """
        import json
        import fdp_kernel
        from fdp_kernel.errors import GovernanceError
        from fdp_kernel.governance import policy
        from fdp_kernel.service import codec

        out = {}
        ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
        out["user"], out["mode"] = ws.user, ws.mode
        rtt = ws.table("rtt_pathways")
        released = ws.release(rtt.group_by("treatment_function_code").agg(n=rtt.count()))
        out["released rows"] = len(released)
        out["min shown"] = int(released.data["n"].dropna().min())

        # Patch the policy and the codec in this process, rewrite the workspace.
        policy.authorise = lambda *a, **k: (_ for _ in ()).throw(RuntimeError("patched"))
        codec.ALLOWED["ScalarUDF"] = object
        ws._purpose = ws.federation.purposes["direct_care"]
        ws._user = "demo.operator"

        def attempt(name, fn):
            try:
                fn()
                out[name] = "allowed"
            except GovernanceError as exc:
                out[name] = exc.rule
            except Exception as exc:
                out[name] = type(exc).__name__

        attempt("other dataset", lambda: ws.table("inpatient_spells"))
        attempt("other org", lambda: fdp_kernel.connect(purpose="elective_planning", org="RSB"))
        attempt("direct care", lambda: fdp_kernel.connect(purpose="direct_care", org="RSA"))
        attempt("execute", lambda: rtt.execute())
        attempt("identifier", lambda: ws.release(rtt.group_by("nhs_number").agg(n=rtt.count())))

        import ibis

        @ibis.udf.scalar.python
        def leak(v: str) -> str:
            return v

        udf = rtt.group_by(x=leak(rtt.nhs_number)).agg(n=rtt.count())
        attempt("udf", lambda: ws.release(udf))

        def crafted(op, **args):
            body = {"format": codec.FORMAT, "root": 0, "nodes": [{"op": op, "args": args}]}
            return lambda: ws._channel.get(ws._body(kind="release", expr=body))

        attempt("raw sql", crafted("SQLQueryResult", query="SELECT * FROM node_RSA.patients"))
        attempt("table function", crafted("ReadCSV", path="/etc/passwd"))
        passwd = ibis.read_csv("/etc/passwd")
        attempt("read file", lambda: ws.release(passwd.agg(n=passwd.count())))
        print(json.dumps(out))
        """,
    )
    assert got["user"] == "fdp.analyst" and got["mode"] == "node service"
    assert got["released rows"] > 0 and got["min shown"] >= 0
    assert got["other dataset"] == "purpose:dataset"
    assert got["other org"] == "identity:no-role-at-org"
    assert got["direct care"] == "purpose:not-held"
    assert got["execute"] == "engine:direct-access"
    assert got["identifier"] == "release:identifier"
    assert got["udf"] == "release:operation"
    assert got["raw sql"] == "release:operation"
    assert got["table function"] == "release:operation"
    assert got["read file"] in ("release:not-governed", "PermissionError", "IOException")
    denied = [e for e in audit_entries(deployed) if e["decision"] == "deny"]
    users = {e["user"] for e in denied}
    assert users == {"fdp.analyst"}, "every refusal names the account the socket saw"
    rules = {e["rule"] for e in denied}
    assert {"purpose:dataset", "engine:direct-access", "release:identifier"} <= rules
    assert {"release:operation", "purpose:not-held"} <= rules


def _verify(deployed) -> subprocess.CompletedProcess:
    return subprocess.run(
        [
            _python(),
            "-m",
            "fdp_kernel.cli",
            "audit",
            "verify",
            "--federation",
            str(deployed["fed"]),
        ],
        user=NODE,
        group=pwd.getpwnam(NODE).pw_gid,
        env={"PATH": os.environ.get("PATH", ""), "HOME": str(deployed["base"])},
        capture_output=True,
        text=True,
        timeout=120,
    )


def test_a_rewritten_truncated_or_deleted_log_is_found(deployed):
    as_analyst(
        deployed,
        """
        import json, fdp_kernel
        ws = fdp_kernel.connect(purpose="elective_planning", org="RSA")
        print(json.dumps({"user": ws.user}))
        """,
    )
    assert _verify(deployed).returncode == 0, _verify(deployed).stdout
    log = deployed["fed"] / "audit" / "RSA.jsonl"
    original = log.read_bytes()
    lines = original.decode().splitlines()
    # Rewritten, with the hashes recomputed as the old unkeyed chain allowed: found.
    from fdp_kernel.governance.audit import entry_hash

    entries = [json.loads(x) for x in lines]
    entries[1]["user"] = "someone.else"
    prev = entries[0]["hash"]
    for entry in entries[1:]:
        entry["prev_hash"] = prev
        entry.pop("mac", None)
        entry["hash"] = prev = entry_hash(entry)
    log.write_text(
        "".join(
            json.dumps(e, sort_keys=True, separators=(",", ":")) + "\n"
            for e in [entries[0], *entries[1:]]
        )
    )
    result = _verify(deployed)
    assert result.returncode == 6 and "RSA.jsonl" in result.stdout, result.stdout
    # Truncated, head rewritten to match: found (the head is keyed).
    kept = original.decode().splitlines()[:2]
    log.write_text("\n".join(kept) + "\n")
    head = log.with_name("RSA.jsonl.head")
    saved_head = head.read_bytes()
    head.write_text(json.dumps({"hash": json.loads(kept[-1])["hash"], "seq": 2}) + "\n")
    assert _verify(deployed).returncode == 6
    # Deleted with its head: the manifest still records it.
    log.unlink()
    head.unlink()
    result = _verify(deployed)
    assert result.returncode == 6 and "missing" in result.stdout, result.stdout
    log.write_bytes(original)
    head.write_bytes(saved_head)
    for path in (log, head):
        os.chown(path, pwd.getpwnam(NODE).pw_uid, pwd.getpwnam(NODE).pw_gid)
    assert _verify(deployed).returncode == 0
