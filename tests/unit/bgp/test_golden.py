"""Golden vectors, both directions: hex decodes to the JSON, the JSON encodes to the hex."""

from __future__ import annotations

from typing import Any

import pytest

from herald.bgp.wire import CodecError, Message, decode_message

from .cases import ALL
from .golden import (
    decoded_to_json,
    error_to_json,
    load_all,
    negotiated_from_json,
)
from .jsonform import from_json

GOLDENS = load_all()
IDS = [name for name, _ in GOLDENS]


def test_every_case_has_its_golden_file() -> None:
    assert sorted(IDS) == sorted(c.name for c in ALL)
    assert len(GOLDENS) >= 55


@pytest.mark.parametrize(("name", "golden"), GOLDENS, ids=IDS)
def test_decode_matches_golden(name: str, golden: dict[str, Any]) -> None:
    negotiated = negotiated_from_json(golden)
    data = bytes.fromhex(golden["hex"])
    if "error" in golden:
        with pytest.raises(CodecError) as raised:
            decode_message(data, negotiated)
        assert error_to_json(raised.value) == golden["error"]
    else:
        decoded = decoded_to_json(decode_message(data, negotiated))
        assert decoded == {"decoded": golden["decoded"], "treatments": golden["treatments"]}


ROUNDTRIP = [(n, g) for n, g in GOLDENS if g.get("roundtrip")]


@pytest.mark.parametrize(("name", "golden"), ROUNDTRIP, ids=[n for n, _ in ROUNDTRIP])
def test_encode_matches_golden(name: str, golden: dict[str, Any]) -> None:
    message = from_json(Message, golden["decoded"])
    assert message.encode(negotiated_from_json(golden)).hex() == golden["hex"]


def test_malformed_goldens_state_their_outcome() -> None:
    """Every non-roundtrip golden must say what went wrong, so none passes vacuously."""
    for name, golden in GOLDENS:
        if golden.get("roundtrip"):
            continue
        assert "error" in golden or golden["treatments"] or name.startswith("unknown-"), name
