"""The message catalogue: every text a person reads on the HMI, the terminal dashboard and
``boosterd status``, in Bahasa Indonesia (``id``) and English (``en``).

Texts live in ``catalogue.py`` keyed by a stable id; code asks ``t(lang, key)``. State
names, modes and alarm ids stay as they are on MQTT: only what people read is translated.
"""

from __future__ import annotations

from controller.i18n.catalogue import MESSAGES

LANGUAGES = ("id", "en")
DEFAULT_LANGUAGE = "id"


def normalise(lang: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """A supported language code from whatever a user, a browser or a file said."""
    if lang:
        code = lang.strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return default if default in LANGUAGES else DEFAULT_LANGUAGE


def from_accept_language(header: str | None, default: str = DEFAULT_LANGUAGE) -> str:
    """The first supported language in an Accept-Language header (q-values in order)."""
    if not header:
        return default
    ranked: list[tuple[float, str]] = []
    for part in header.split(",")[:20]:
        tag, _, params = part.strip().partition(";")
        q = 1.0
        if params.strip().startswith("q="):
            try:
                q = float(params.strip()[2:])
            except ValueError:
                q = 0.0
        ranked.append((q, tag))
    for _, tag in sorted(ranked, key=lambda x: -x[0]):
        code = tag.strip().lower()[:2]
        if code in LANGUAGES:
            return code
    return default


def t(lang: str, key: str, **fields: object) -> str:
    """The text for ``key`` in ``lang``; English, then the key itself, when missing."""
    entry = MESSAGES.get(key)
    if entry is None:
        return key
    text = entry.get(lang) or entry.get("en") or key
    return text.format(**fields) if fields else text


def state_name(lang: str, state: str) -> str:
    """A control state, mode or pump state (``high_pressure``, ``locked out``) for people."""
    return t(lang, f"state.{state.replace(' ', '_')}") if state else ""


def alarm_text(lang: str, alarm_id: str, fallback: str = "") -> str:
    """An alarm's message for people; per-pump alarms carry the pump's name."""
    for prefix in ("pump_lockout_", "pump_off_", "drive_comms_"):
        if alarm_id.startswith(prefix):
            key = f"alarm.{prefix.rstrip('_')}"
            return t(lang, key, pump=alarm_id[len(prefix) :])
    key = f"alarm.{alarm_id}"
    if key in MESSAGES:
        return t(lang, key)
    return fallback or alarm_id
