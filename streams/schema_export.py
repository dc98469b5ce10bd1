"""JSON Schemas of every topic's key and value: the public contract, for downstream consumers.

``export_schemas(directory)`` writes ``<topic>.key.json`` and ``<topic>.value.json`` for each
topic of the catalogue and ``<topic>.dlq.value.json`` for its dead letters, plus an
``index.json`` listing topics, partitions, configs and files. The schemas come from the same
pydantic models the producers encode with and the consumers validate against, so they cannot
drift from the code.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from pydantic import TypeAdapter

from schemas.dead_letters import DeadLetter
from streams.topics import CATALOGUE

__all__ = ["export_schemas", "schema_of"]


def schema_of(model: object, title: str) -> dict[str, Any]:
    """The JSON Schema (draft 2020-12) of a pydantic model or parametrized generic."""
    schema = TypeAdapter(model).json_schema(mode="serialization")
    schema["title"] = title
    return {"$schema": "https://json-schema.org/draft/2020-12/schema", **schema}


def export_schemas(directory: Path) -> list[Path]:
    """Write the schemas under ``directory`` (created if needed); return the files written."""
    directory.mkdir(parents=True, exist_ok=True)
    written: list[Path] = []
    index: list[dict[str, Any]] = []

    def write(name: str, schema: dict[str, Any]) -> str:
        path = directory / name
        path.write_text(json.dumps(schema, indent=2, sort_keys=True) + "\n", encoding="utf-8")
        written.append(path)
        return name

    for spec in CATALOGUE.values():
        index.append({
            "topic": spec.name, "description": spec.description,
            "partitions": spec.partitions, "config": spec.config,
            "key": write(f"{spec.name}.key.json", schema_of(spec.key, f"{spec.name} key")),
            "value": write(f"{spec.name}.value.json",
                           schema_of(spec.value, f"{spec.name} value")),
        })
        index.append({
            "topic": spec.dlq, "description": f"Records a consumer of {spec.name} gave up on.",
            "partitions": 1, "config": {},
            "key": None,
            "value": write(f"{spec.dlq}.value.json", schema_of(DeadLetter, f"{spec.dlq} value")),
        })
    write("index.json", {"topics": index})  # type: ignore[arg-type]
    return written
