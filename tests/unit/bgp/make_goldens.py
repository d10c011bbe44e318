"""Rewrite golden/*.json from cases.py: `.venv/bin/python -m tests.unit.bgp.make_goldens`.

Run it after changing a case, then read the diff: the tests only compare against the files.
"""

from __future__ import annotations

import json
from typing import Any

from herald.bgp.wire import INITIAL, CodecError, decode_message

from .cases import ALL, Case
from .golden import GOLDEN_DIR, decoded_to_json, error_to_json
from .jsonform import to_json


def golden_for(case: Case) -> dict[str, Any]:
    out: dict[str, Any] = {"description": case.description}
    if case.negotiated != INITIAL:
        out["negotiated"] = to_json(case.negotiated)
    if case.message is not None:
        encoded = case.message.encode(case.negotiated).hex()
        if case.hex is not None and case.hex != encoded:
            raise SystemExit(f"{case.name}: encoder gives {encoded}, hand-written {case.hex}")
        out["hex"] = encoded
        decoded = decode_message(bytes.fromhex(encoded), case.negotiated)
        if decoded.message != case.message or decoded.treatments:
            raise SystemExit(f"{case.name}: does not decode back: {decoded}")
        return out | {"roundtrip": True} | decoded_to_json(decoded)
    assert case.hex is not None
    out["hex"] = case.hex
    try:
        decoded = decode_message(bytes.fromhex(case.hex), case.negotiated)
    except CodecError as e:
        if case.error != (e.code, e.subcode):
            raise SystemExit(f"{case.name}: raised {e}, expected {case.error}") from None
        return out | {"error": error_to_json(e)}
    got = tuple((t.treatment, t.attribute_type) for t in decoded.treatments)
    if case.error is not None or got != case.treatments:
        raise SystemExit(f"{case.name}: decoded with {got}, expected {case}")
    return out | {"roundtrip": False} | decoded_to_json(decoded)


def main() -> None:
    goldens = {case.name: golden_for(case) for case in ALL}  # all checked before any write
    GOLDEN_DIR.mkdir(exist_ok=True)
    for old in GOLDEN_DIR.glob("*.json"):
        old.unlink()
    for name, golden in goldens.items():
        (GOLDEN_DIR / f"{name}.json").write_text(json.dumps(golden, indent=1) + "\n")
    print(f"wrote {len(ALL)} golden files to {GOLDEN_DIR}")


if __name__ == "__main__":
    main()
