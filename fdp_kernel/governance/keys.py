"""Secret keys for keyed pseudonyms.

Each node has a 256-bit secret in a key file outside its store, readable only by its owner
(mode 0600). Pseudonyms never use the key directly: a key is derived per purpose (so
pseudonyms do not link across purposes) or taken from an agreement's shared linkage key (so
the same person links across the nodes of one agreement, and only there).

The pseudonym of a value ``v`` is the first 20 hex digits of
``sha256(outer || sha256(inner || v))`` where ``inner`` and ``outer`` are 256-bit hex keys
derived from the purpose or agreement key by HMAC-SHA256. This is the nested (NMAC) form of
HMAC written with string prefixes so that every engine computes it with its own SHA-256 in SQL;
the outer hash stops length extension, and the keys never leave the process that derived them.
A missing or unprotected key is a refusal: there is never an unkeyed hash.
"""

from __future__ import annotations

import hashlib
import hmac
import os
import secrets
import stat
from dataclasses import dataclass
from pathlib import Path

from fdp_kernel.errors import GovernanceError, StoreError

PSEUDONYM_LENGTH = 20  # hex digits: 80 bits, collision-free in practice for national volumes
_LABEL = b"fdp:pseudonym:v1:"


@dataclass(frozen=True)
class PseudonymKey:
    """The two derived hex keys that a pseudonymising expression needs; never printed."""

    inner: str
    outer: str
    label: str  # "purpose:<id>" or "agreement:<id>": what the key is for (safe to log)

    def __repr__(self) -> str:  # keep secrets out of notebooks, logs and tracebacks
        return f"PseudonymKey({self.label}, <secret>)"

    def pseudonym(self, value: str | None) -> str | None:
        """Reference implementation in Python (the SQL versions must agree with it)."""
        if value is None:
            return None
        inner = hashlib.sha256((self.inner + str(value)).encode()).hexdigest()
        return hashlib.sha256((self.outer + inner).encode()).hexdigest()[:PSEUDONYM_LENGTH]


def create_key(path: Path, *, force: bool = False) -> None:
    """Write a new random 256-bit key (hex) readable only by its owner."""
    path = Path(path)
    if path.exists() and not force:
        raise StoreError(f"key {path} already exists; refusing to replace it without --force")
    try:
        path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
        os.chmod(path.parent, 0o700)
        tmp = path.with_name(path.name + ".partial")
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(secrets.token_hex(32) + "\n")
        os.replace(tmp, path)
    except OSError as exc:
        raise StoreError(f"cannot write key {path}: {exc.strerror or exc}") from None


def read_key(path: Path | None, *, owner: str) -> bytes:
    """The key bytes; refuses (fail closed) when missing, unprotected or malformed."""
    if path is None:
        raise GovernanceError(
            f"{owner} has no pseudonymisation key in the federation file, so identifiers cannot "
            "be pseudonymised and nothing is shown. Add 'key: keys/<ODS>.key' to its entry "
            "(`fdp synth` creates keys for the demo)",
            rule="key:missing",
        )
    path = Path(path)
    try:
        info = path.stat()
        text = path.read_text().strip()
    except OSError as exc:
        raise GovernanceError(
            f"the key of {owner} cannot be read ({path}: {exc.strerror or exc}), so nothing is "
            "shown. Restore the key file, or ask the node's administrator",
            rule="key:unreadable",
        ) from None
    if info.st_mode & (stat.S_IRWXG | stat.S_IRWXO):
        raise GovernanceError(
            f"the key of {owner} ({path}) is readable by other users, so it is not used. "
            f"Fix: chmod 600 {path}",
            rule="key:unprotected",
        )
    try:
        key = bytes.fromhex(text)
    except ValueError:
        key = b""
    if len(key) < 32:
        raise GovernanceError(
            f"the key of {owner} ({path}) is not a 256-bit hex key", rule="key:malformed"
        )
    return key


def derive(key: bytes, label: str) -> PseudonymKey:
    """Derive the keys for one purpose or agreement (``label``) from a node or agreement key."""
    base = hmac.new(key, _LABEL + label.encode(), hashlib.sha256).digest()
    inner = hmac.new(base, b"inner", hashlib.sha256).hexdigest()
    outer = hmac.new(base, b"outer", hashlib.sha256).hexdigest()
    return PseudonymKey(inner=inner, outer=outer, label=label)


def plan_key(fed, plan) -> PseudonymKey:
    """The derived key a governed table's pseudonyms use: the agreement's shared linkage key
    for ``agreement:<id>`` labels, else the provider node's key (``fed`` a Federation)."""
    kind, _, ident = plan.key_label.partition(":")
    if kind == "agreement":
        agreement = fed.agreements[ident]
        path = Path(agreement.key) if agreement.key else None
        raw = read_key(path, owner=f"agreement {ident}")
    else:
        raw = read_key(fed.org(plan.provider).key, owner=plan.provider)
    return derive(raw, plan.key_label)


def audit_key(fed) -> bytes | None:
    """The federation's audit key (``keys/audit.key``), or None where it has none (a
    federation written before audit chains were keyed). Refuses an unprotected or unreadable
    key: nothing is audited with a key others could use."""
    path = Path(fed.audit_key)
    if not path.exists() and not path.is_symlink():
        return None
    return read_key(path, owner="the audit chain")
