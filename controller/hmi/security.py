"""Sessions, CSRF tokens and the login throttle of the HMI.

Sessions live in memory only (a restart logs everyone out, which is fine on a station).
The login throttle is keyed by (user name, client address): a stranger hammering the
operator's name from elsewhere cannot lock the operator out at the cabinet, and every
lockout expires by itself (at most ``MAX_LOCK_S``). The table is bounded, so a flood of
made-up names cannot grow memory.
"""

from __future__ import annotations

import hmac
import secrets
import time
from collections import OrderedDict
from collections.abc import Callable
from dataclasses import dataclass, field

FREE_FAILURES = 5  # wrong passwords allowed before the first lockout
FIRST_LOCK_S = 30.0
MAX_LOCK_S = 900.0  # a lockout never lasts longer than 15 minutes
FORGET_AFTER_S = 3600.0  # a quiet hour clears the record
MAX_TRACKED = 10_000
MAX_SESSIONS = 200


@dataclass
class Session:
    token: str
    user: str
    role: str
    csrf: str
    lang: str | None
    last_seen: float
    flash: list[tuple[str, str]] = field(default_factory=list)  # (kind, text)


class Sessions:
    """Opaque random tokens; idle sessions expire after ``idle_s``."""

    def __init__(self, idle_s: float, clock: Callable[[], float] = time.monotonic) -> None:
        self.idle_s = idle_s
        self.clock = clock
        self._by_token: OrderedDict[str, Session] = OrderedDict()

    def create(self, user: str, role: str, lang: str | None) -> Session:
        self._expire()
        while len(self._by_token) >= MAX_SESSIONS:
            self._by_token.popitem(last=False)  # the least recently used goes first
        s = Session(
            token=secrets.token_urlsafe(32),
            user=user,
            role=role,
            csrf=secrets.token_urlsafe(32),
            lang=lang,
            last_seen=self.clock(),
        )
        self._by_token[s.token] = s
        return s

    def get(self, token: str | None, *, touch: bool = True) -> Session | None:
        """The live session for a cookie; ``touch`` (a request by the user) keeps it alive."""
        if not token:
            return None
        s = self._by_token.get(token)
        if s is None:
            return None
        now = self.clock()
        if now - s.last_seen > self.idle_s:
            del self._by_token[token]
            return None
        if touch:
            s.last_seen = now
            self._by_token.move_to_end(token)
        return s

    def drop(self, token: str | None) -> None:
        if token:
            self._by_token.pop(token, None)

    def drop_user(self, user: str) -> None:
        for token in [t for t, s in self._by_token.items() if s.user == user]:
            del self._by_token[token]

    def _expire(self) -> None:
        now = self.clock()
        for token in [t for t, s in self._by_token.items() if now - s.last_seen > self.idle_s]:
            del self._by_token[token]

    def __len__(self) -> int:
        return len(self._by_token)


def csrf_ok(session: Session, sent: str | None) -> bool:
    return bool(sent) and hmac.compare_digest(session.csrf.encode(), str(sent).encode())


@dataclass
class _Record:
    failures: int = 0
    locked_until: float = 0.0
    last: float = 0.0


class LoginThrottle:
    """Failures per (user, address); lockouts double from 30 s up to 15 min, then expire."""

    def __init__(self, clock: Callable[[], float] = time.monotonic) -> None:
        self.clock = clock
        self._records: OrderedDict[tuple[str, str], _Record] = OrderedDict()

    def wait_s(self, user: str, address: str) -> float:
        """Seconds until this user may try again from this address (0: now)."""
        rec = self._get((user, address))
        return max(0.0, rec.locked_until - self.clock()) if rec else 0.0

    def failed(self, user: str, address: str) -> None:
        key = (user, address)
        now = self.clock()
        rec = self._get(key) or _Record()
        rec.failures += 1
        rec.last = now
        over = rec.failures - FREE_FAILURES
        if over >= 0:
            rec.locked_until = now + min(FIRST_LOCK_S * 2**over, MAX_LOCK_S)
        self._records[key] = rec
        self._records.move_to_end(key)
        while len(self._records) > MAX_TRACKED:
            self._records.popitem(last=False)

    def succeeded(self, user: str, address: str) -> None:
        self._records.pop((user, address), None)

    def _get(self, key: tuple[str, str]) -> _Record | None:
        rec = self._records.get(key)
        if rec is not None and self.clock() - rec.last > FORGET_AFTER_S + MAX_LOCK_S:
            del self._records[key]
            return None
        return rec


def security_headers(tls: bool) -> dict[str, str]:
    """Headers on every response: no inline script, no framing, no sniffing, no referrer."""
    headers = {
        "Content-Security-Policy": (
            "default-src 'none'; script-src 'self'; style-src 'self'; img-src 'self' data:; "
            "connect-src 'self'; form-action 'self'; base-uri 'none'; frame-ancestors 'none'"
        ),
        "X-Content-Type-Options": "nosniff",
        "X-Frame-Options": "DENY",
        "Referrer-Policy": "no-referrer",
        "Cross-Origin-Opener-Policy": "same-origin",
        "Permissions-Policy": "camera=(), microphone=(), geolocation=()",
    }
    if tls:
        headers["Strict-Transport-Security"] = "max-age=31536000"
    return headers
