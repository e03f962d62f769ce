"""Who is asking, from the connection: never from an environment variable or an argument.

On one machine the kernel reaches the service over Unix domain sockets. The service's identity
socket (``ident.sock``) reads the connecting process's credentials from the kernel
(``SO_PEERCRED``: the uid of the OS account that owns the kernel) and hands that process a
session token bound to the account, valid for ``TOKEN_HOURS``. The kernel presents the token
as a bearer token on every Flight call; the service looks it up. Another account's process can
neither obtain nor read the token (it lives in the kernel's memory and crosses Unix sockets
only).

Between machines (TCP with TLS) the bearer token is one the service already knows: a token
file of SHA-256 digests mapped to a person or to a peer service (``TokenFile``); the JupyterHub
deployment adds hub-issued tokens.

Accounts map to federation users on the service side only (``policy.user_for_account``).
"""

from __future__ import annotations

import contextlib
import hashlib
import hmac
import json
import os
import pwd
import secrets
import socket
import struct
import threading
import time
from dataclasses import dataclass
from pathlib import Path

import yaml

from fdp_kernel.errors import ConfigError, GovernanceError, StoreError

TOKEN_HOURS = 12
_STRUCT_UCRED = "3i"  # pid, uid, gid


@dataclass(frozen=True)
class Identity:
    account: str  # the authenticated name: an OS account, a hub user, or a peer service's id
    kind: str  # "person" or "service"
    via: str  # how it was established: "peer-credentials", "token file", "hub"
    uid: int | None = None


class TokenRegistry:
    """Tokens this service has issued or loaded: token digest -> (identity, expiry)."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._tokens: dict[str, tuple[Identity, float]] = {}

    @staticmethod
    def digest(token: str) -> str:
        return hashlib.sha256(token.encode()).hexdigest()

    def issue(self, identity: Identity, hours: float = TOKEN_HOURS) -> tuple[str, float]:
        token = secrets.token_urlsafe(32)
        expires = time.time() + hours * 3600
        with self._lock:
            self._tokens[self.digest(token)] = (identity, expires)
        return token, expires

    def add(self, digest: str, identity: Identity, expires: float) -> None:
        with self._lock:
            self._tokens[digest] = (identity, expires)

    def revoke(self, token: str) -> None:
        with self._lock:
            self._tokens.pop(self.digest(token), None)

    def lookup(self, token: str) -> Identity:
        """The identity of a token; a refusal for an unknown, revoked or expired one."""
        digest = self.digest(token)
        with self._lock:
            found = next(
                (v for k, v in self._tokens.items() if hmac.compare_digest(k, digest)), None
            )
        if found is None:
            raise GovernanceError(
                "the node service does not know this token (unknown or revoked): connect "
                "again to get a new one",
                rule="identity:unauthenticated",
            )
        identity, expires = found
        if time.time() > expires:
            raise GovernanceError(
                "this token has expired: connect again to get a new one",
                rule="identity:token-expired",
            )
        return identity


def load_token_file(path: Path, registry: TokenRegistry) -> int:
    """Load ``tokens.yaml``: a list of ``{sha256: HEX, person: NAME | service: ID,
    expires: ISO date (optional)}``. The file holds digests, never tokens."""
    try:
        entries = yaml.safe_load(Path(path).read_text()) or []
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"{path}: cannot read the token file ({exc})") from None
    if not isinstance(entries, list):
        raise ConfigError(f"{path}: expected a list of tokens. Fix: see docs/deploy.md")
    for i, entry in enumerate(entries):
        if not isinstance(entry, dict) or not isinstance(entry.get("sha256"), str):
            raise ConfigError(f"{path}: entry {i} needs 'sha256'. Fix: see docs/deploy.md")
        kind = "service" if "service" in entry else "person"
        name = entry.get(kind)
        if not isinstance(name, str) or not name:
            raise ConfigError(f"{path}: entry {i} needs 'person' or 'service'")
        expires = entry.get("expires")
        limit = time.mktime(expires.timetuple()) if expires else float("inf")
        registry.add(entry["sha256"].lower(), Identity(name, kind, "token file"), limit)
    return len(entries)


def peer_account(conn: socket.socket) -> tuple[str, int, int]:
    """(account name, uid, pid) of the process at the other end of a Unix socket."""
    raw = conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, struct.calcsize(_STRUCT_UCRED))
    pid, uid, _gid = struct.unpack(_STRUCT_UCRED, raw)
    try:
        name = pwd.getpwuid(uid).pw_name
    except KeyError:
        name = f"uid:{uid}"
    return name, uid, pid


class PeerIdentityServer:
    """The identity socket: one line of JSON with a session token for the connecting account."""

    def __init__(self, path: Path, registry: TokenRegistry, mode: int = 0o666) -> None:
        self.path = Path(path)
        self.registry = registry
        self.path.unlink(missing_ok=True)
        self._sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        self._sock.bind(str(self.path))
        os.chmod(self.path, mode)  # who may ask is the socket folder's business (docs/deploy.md)
        self._sock.listen(64)
        self._thread = threading.Thread(target=self._serve, daemon=True, name="fdp-ident")
        self._stop = False

    def start(self) -> PeerIdentityServer:
        self._thread.start()
        return self

    def _serve(self) -> None:
        while not self._stop:
            try:
                conn, _ = self._sock.accept()
            except OSError:
                return
            with conn:
                try:
                    account, uid, pid = peer_account(conn)
                    identity = Identity(account, "person", "peer-credentials", uid)
                    token, expires = self.registry.issue(identity)
                    body = {"token": token, "account": account, "pid": pid, "expires": expires}
                    conn.sendall(json.dumps(body).encode() + b"\n")
                except OSError:
                    continue

    def close(self) -> None:
        self._stop = True
        with contextlib.suppress(OSError):
            self._sock.shutdown(socket.SHUT_RDWR)
        self._sock.close()
        self.path.unlink(missing_ok=True)


def fetch_peer_token(path: Path, timeout: float = 10.0) -> str:
    """Ask the service's identity socket for this process's token (client side)."""
    try:
        with socket.socket(socket.AF_UNIX, socket.SOCK_STREAM) as sock:
            sock.settimeout(timeout)
            sock.connect(str(path))
            data = b""
            while not data.endswith(b"\n"):
                chunk = sock.recv(4096)
                if not chunk:
                    break
                data += chunk
        return json.loads(data)["token"]
    except (OSError, ValueError, KeyError) as exc:
        raise StoreError(
            f"cannot reach the node service's identity socket {path} ({exc}); check that "
            "`fdp serve` is running and that your account may use its socket folder"
        ) from None
