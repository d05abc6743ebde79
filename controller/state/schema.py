"""JSON Schema files for every MQTT payload, generated from the models into docs/schema/.

    python -m controller.state.schema            # (re)write docs/schema/*.json
    python -m controller.state.schema --check    # exit 1 if a committed file is stale

(``scripts/gen-schema`` runs the first.) The files are JSON Schema 2020-12, one per
topic; a SCADA engineer can validate their parser's input against them. They are exact
for this release: ``additionalProperties: false`` everywhere, so a message with a key
the schema does not know fails; a later release may add optional keys (docs/mqtt.md:
parse by key, ignore keys you do not know), and ships the schemas that include them.
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import sys
from pathlib import Path
from typing import Any, Literal

from controller.state import models
from controller.state.dump import adapter, omitted_fields

DIALECT = "https://json-schema.org/draft/2020-12/schema"
OUT = Path(__file__).resolve().parents[2] / "docs" / "schema"

#: file name -> (model or union, topic, direction)
PAYLOADS: dict[str, tuple[Any, str, str]] = {
    "telemetry.json": (models.TelemetryMessage, "<prefix>/<site>/telemetry", "out"),
    "telemetry-schema.json": (models.SchemaMessage, "<prefix>/<site>/schema/<id>", "out"),
    "status.json": (models.StatusMessage, "<prefix>/<site>/status", "out"),
    "alarm.json": (models.AlarmTopicMessage, "<prefix>/<site>/alarm", "out"),
    "cmd-result.json": (models.CommandReply, "<prefix>/<site>/cmd/<name>/result", "out"),
    **{
        f"cmd-{name}.json": (model, f"<prefix>/<site>/cmd/{name}", "in")
        for name, model in models.COMMANDS.items()
    },
}


#: What a payload that is one of several models is (a union has no docstring).
UNION_NOTES = {
    "<prefix>/<site>/status": "One of: the station online (OnlineStatus: the status "
    "body under a head), its orderly stop (OfflineStatus), or the Last Will the broker "
    "publishes when the station falls silent (LastWill: no ts, will: true).",
    "<prefix>/<site>/alarm": "One of: an alarm raised, cleared or acknowledged "
    "(AlarmMessage), or a write by a person at the station's web HMI (CommandEventMessage: "
    "event hmi_command, not an alarm).",
}


def schema_of(kind: Any, topic: str, direction: str) -> dict[str, Any]:
    """The JSON Schema of one payload, tidied for readers (see ``_tidy``)."""
    mode: Literal["validation", "serialization"] = (
        "serialization" if direction == "out" else "validation"
    )
    body = adapter(kind).json_schema(mode=mode)
    _tidy(body, out=direction == "out")
    for definition in body.get("$defs", {}).values():
        _tidy(definition, out=direction == "out")
    if direction == "in":
        # The station ignores keys it does not know in a command (only the nested
        # station-file parts are strict, as in the file).
        body.pop("additionalProperties", None)
    who = "the station publishes" if direction == "out" else "SCADA sends"
    head = {
        "$schema": DIALECT,
        "title": body.pop("title", topic.rsplit("/", 1)[-1]),
        "description": f"What {who} on {topic} (docs/mqtt.md). "
        + (body.pop("description", None) or UNION_NOTES.get(topic, "")),
    }
    return {**head, **body}


def _tidy(node: dict[str, Any], *, out: bool) -> None:
    """Inherited fields keep their descriptions (pydantic reads a class's own docstrings
    only); an optional key has no ``default: null`` (it is left out, never null); what
    the station sends always has every key that is not optional."""
    cls = _MODELS.get(node.get("title", ""))
    props: dict[str, Any] = node.get("properties", {})
    if cls is None or not props:
        return
    for base in cls.__mro__[1:]:
        if dataclasses.is_dataclass(base):
            own = adapter(base).json_schema(mode="serialization").get("properties", {})
            for key, prop in own.items():
                if key in props and "description" in prop:
                    props[key].setdefault("description", prop["description"])
    omitted = omitted_fields(cls)
    for key in omitted & props.keys():
        if props[key].get("default", 0) is None:
            del props[key]["default"]
    if out:
        node["required"] = [key for key in props if key not in omitted]


_MODELS: dict[str, type] = {
    name: obj
    for name, obj in vars(models).items()
    if isinstance(obj, type) and dataclasses.is_dataclass(obj)
}


def render() -> dict[str, str]:
    """Every schema file's name and text."""
    return {
        # Docstrings quote code as ``x``; a schema's reader wants `x`.
        name: json.dumps(schema_of(kind, topic, direction), indent=2, ensure_ascii=False).replace(
            "``", "`"
        )
        + "\n"
        for name, (kind, topic, direction) in PAYLOADS.items()
    }


def stale(directory: Path = OUT) -> list[str]:
    """The files in ``directory`` that differ from what the models generate (or are
    missing, or are left over from a payload that no longer exists)."""
    files = render()
    present = {p.name for p in directory.glob("*.json")}
    out = [n for n, text in files.items() if not _same(directory / n, text)]
    return sorted(out + list(present - files.keys()))


def _same(path: Path, text: str) -> bool:
    try:
        return path.read_text(encoding="utf-8") == text
    except FileNotFoundError:
        return False


def main(argv: list[str] | None = None) -> int:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--check", action="store_true", help="only report stale files")
    ap.add_argument("--out", type=Path, default=OUT)
    args = ap.parse_args(argv)
    if args.check:
        bad = stale(args.out)
        for name in bad:
            print(f"{args.out / name} is stale: run scripts/gen-schema", file=sys.stderr)
        return 1 if bad else 0
    args.out.mkdir(parents=True, exist_ok=True)
    files = render()
    for leftover in {p.name for p in args.out.glob("*.json")} - files.keys():
        (args.out / leftover).unlink()
    for name, text in files.items():
        (args.out / name).write_text(text, encoding="utf-8")
    print(f"wrote {len(files)} schemas to {args.out}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
