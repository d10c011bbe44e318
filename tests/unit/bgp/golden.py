"""Golden files: one JSON per case, hex on one side and the decoded form on the other."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from herald.bgp.wire import INITIAL, AppliedTreatment, CodecError, Decoded, Negotiated

from .jsonform import family_to_json, from_json, to_json

GOLDEN_DIR = Path(__file__).parent / "golden"


def treatments_to_json(treatments: tuple[AppliedTreatment, ...]) -> list[dict[str, Any]]:
    """What a treatment decided, without its free-text reason (wording may change)."""
    out = []
    for t in treatments:
        item: dict[str, Any] = {
            "treatment": t.treatment.name,
            "attribute": t.attribute_type,
            "subcode": int(t.subcode),
        }
        if t.afi:
            item["family"] = family_to_json(t.family)
        out.append(item)
    return out


def error_to_json(error: CodecError) -> dict[str, Any]:
    return {"code": int(error.code), "subcode": int(error.subcode), "data": error.data.hex()}


def decoded_to_json(decoded: Decoded) -> dict[str, Any]:
    return {
        "decoded": to_json(decoded.message),
        "treatments": treatments_to_json(decoded.treatments),
    }


def negotiated_from_json(golden: dict[str, Any]) -> Negotiated:
    if "negotiated" not in golden:
        return INITIAL
    result: Negotiated = from_json(Negotiated, golden["negotiated"])
    return result


def load_all() -> list[tuple[str, dict[str, Any]]]:
    return [(p.stem, json.loads(p.read_text())) for p in sorted(GOLDEN_DIR.glob("*.json"))]
