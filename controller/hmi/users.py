"""HMI accounts: a JSON file of users with scrypt-hashed passwords and a role.

There is no default account: a station has users only when a technician made them with
``boosterd hmi-user add``. scrypt (standard library, memory-hard: 16 MiB per attempt)
makes a stolen file expensive to brute-force on a GPU; comparison is constant-time.
"""

from __future__ import annotations

import base64
import ctypes
import ctypes.util
import functools
import hashlib
import hmac
import json
import os
import re
import secrets
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from controller.errors import BoosterError

ROLES = ("viewer", "operator", "admin")
#: scrypt cost: n=2**14, r=8 needs 128*r*n = 16 MiB per hash, about 0.1 s on a Pi 4.
SCRYPT_N = 2**14
SCRYPT_R = 8
SCRYPT_P = 1
MIN_PASSWORD_CHARS = 10
MAX_PASSWORD_CHARS = 256  # bounds the work an attacker can ask of the KDF per attempt
NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_.-]{0,31}$")


class UserError(BoosterError):
    """A user cannot be added, changed or removed; the message says why."""


@dataclass(frozen=True, slots=True)
class User:
    name: str
    role: str
    salt: str
    hash: str
    lang: str | None = None

    def as_dict(self) -> dict[str, Any]:
        return {"role": self.role, "salt": self.salt, "hash": self.hash, "lang": self.lang}


def role_at_least(role: str, needed: str) -> bool:
    """True when ``role`` may do what ``needed`` may (viewer < operator < admin)."""
    return role in ROLES and ROLES.index(role) >= ROLES.index(needed)


def _kdf(password: str, salt: bytes) -> bytes:
    return hashlib.scrypt(
        password.encode("utf-8"),
        salt=salt,
        n=SCRYPT_N,
        r=SCRYPT_R,
        p=SCRYPT_P,
        maxmem=64 * 1024 * 1024,
        dklen=32,
    )


def check_password_rules(password: str) -> None:
    if len(password) < MIN_PASSWORD_CHARS:
        raise UserError(f"the password needs at least {MIN_PASSWORD_CHARS} characters")
    if len(password) > MAX_PASSWORD_CHARS:
        raise UserError(f"the password may have at most {MAX_PASSWORD_CHARS} characters")


def make_user(name: str, role: str, password: str, lang: str | None = None) -> User:
    if not NAME_RE.match(name):
        raise UserError(f"user name {name!r} is not allowed: 1-32 letters, digits, '_', '.', '-'")
    if role not in ROLES:
        raise UserError(f"role must be one of {', '.join(ROLES)}, not {role!r}")
    check_password_rules(password)
    salt = secrets.token_bytes(16)
    return User(
        name=name,
        role=role,
        salt=base64.b64encode(salt).decode(),
        hash=base64.b64encode(_kdf(password, salt)).decode(),
        lang=lang,
    )


def verify(user: User | None, password: str) -> bool:
    """Constant-time check; an unknown user costs the same scrypt as a known one."""
    if len(password) > MAX_PASSWORD_CHARS:
        return False
    if user is None:
        _kdf(password, b"\0" * 16)
        return False
    try:
        salt = base64.b64decode(user.salt)
        expected = base64.b64decode(user.hash)
    except ValueError:
        return False
    return hmac.compare_digest(_kdf(password, salt), expected)


#: glibc's mallopt parameter M_MMAP_THRESHOLD
_M_MMAP_THRESHOLD = -3


@functools.cache
def _large_blocks_go_back() -> bool:
    """Make glibc serve blocks of 8 MiB and more by mmap, returned to the system on free.

    scrypt allocates 16 MiB per check. By default glibc raises its mmap threshold after
    the first such free and then keeps the next 16 MiB blocks in the arena for good:
    measured, five logins left the daemon 15-64 MB bigger. A fixed threshold stops that
    (process-wide; blocks that large are otherwise rare here). No-op without glibc.
    """
    try:
        libc = ctypes.CDLL(ctypes.util.find_library("c") or "libc.so.6")
        return bool(libc.mallopt(_M_MMAP_THRESHOLD, 8 * 1024 * 1024))
    except (OSError, AttributeError):
        return False


def verify_and_release(user: User | None, password: str) -> bool:
    """``verify`` for a long-running server: the KDF's memory goes back to the system."""
    _large_blocks_go_back()
    return verify(user, password)


class UserStore:
    """The users file; re-read when it changes on disk, so ``hmi-user`` needs no restart."""

    def __init__(self, path: str | os.PathLike[str]) -> None:
        self.path = Path(path)
        self._mtime: float | None = None
        self._users: dict[str, User] = {}

    def users(self) -> dict[str, User]:
        try:
            mtime = self.path.stat().st_mtime
        except FileNotFoundError:
            self._users, self._mtime = {}, None
            return {}
        if mtime != self._mtime:
            self._users = self._read()
            self._mtime = mtime
        return dict(self._users)

    def get(self, name: str) -> User | None:
        return self.users().get(name)

    def _read(self) -> dict[str, User]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except (OSError, ValueError) as exc:
            raise UserError(f"HMI users file {self.path} is unreadable: {exc}") from exc
        users: dict[str, User] = {}
        for name, entry in (data.get("users") or {}).items():
            try:
                users[name] = User(
                    name=name,
                    role=str(entry["role"]),
                    salt=str(entry["salt"]),
                    hash=str(entry["hash"]),
                    lang=entry.get("lang"),
                )
            except (KeyError, TypeError) as exc:
                raise UserError(f"HMI users file {self.path}: user {name!r} is damaged") from exc
        return users

    def save(self, users: dict[str, User]) -> None:
        """Atomic, owner-only: a crash leaves the old file, nobody else reads the hashes."""
        self.path.parent.mkdir(parents=True, exist_ok=True)
        tmp = self.path.with_name(self.path.name + ".tmp")
        body = json.dumps({"users": {n: u.as_dict() for n, u in sorted(users.items())}}, indent=1)
        fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w", encoding="utf-8") as fh:
            fh.write(body)
            fh.flush()
            os.fsync(fh.fileno())
        self._keep_owner(tmp)
        os.replace(tmp, self.path)
        self._mtime = None

    def _keep_owner(self, tmp: Path) -> None:
        """``sudo boosterd hmi-user passwd`` must not take the file from the service user."""
        try:
            old = self.path.stat()
        except FileNotFoundError:
            return
        if os.geteuid() == 0 and (old.st_uid, old.st_gid) != (0, 0):
            os.chown(tmp, old.st_uid, old.st_gid)

    def add(self, user: User) -> None:
        users = self.users()
        if user.name in users:
            raise UserError(f"user {user.name!r} exists; use 'passwd' or 'remove' first")
        users[user.name] = user
        self.save(users)

    def replace(self, user: User) -> None:
        users = self.users()
        if user.name not in users:
            raise UserError(f"no user {user.name!r}")
        users[user.name] = user
        self.save(users)

    def remove(self, name: str) -> None:
        users = self.users()
        if users.pop(name, None) is None:
            raise UserError(f"no user {name!r}")
        self.save(users)
