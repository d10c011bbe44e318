"""The netlink element encoder against what nft 1.0.6 sends for the same elements.

The golden files (golden/netlink/NAME.hex) are nft's own batches, captured with strace from
`nft -f` in a namespace holding the dsr scenario's declarations; the interop test
tests/interop/test_dataplane_netlink.py captures them again and checks these files still
match. nft's NFTA_SET_ELEM_LIST_SET_ID is stripped (see netlink_nft's docstring).
"""

from __future__ import annotations

import re
import struct
import subprocess
from collections.abc import Sequence
from pathlib import Path

import pytest
from scenarios import NODE, SCENARIOS

from herald.dataplane.apply import Datapath, Nft, resync_steps
from herald.dataplane.netlink_nft import (
    NFT_MSG_DELSETELEM,
    NFT_MSG_NEWSETELEM,
    Batch,
    Layout,
    UnknownLayout,
    layouts,
)
from herald.dataplane.render import Element, SlotMap, render

GOLDEN = Path(__file__).with_name("golden") / "netlink"
NFTA_SET_ELEM_LIST_SET_ID = 4

# name -> (family, container, verb, element texts): one nft command each.
CASES: dict[str, list[tuple[str, str, str, tuple[str, ...]]]] = {
    "vips": [
        ("inet", "vips-v4", "add", ("203.0.113.10", "203.0.113.11")),
        ("inet", "vips-v6", "add", ("2001:db8:113::10",)),
    ],
    "services": [
        ("inet", "services-v4", "add", ("203.0.113.10 . tcp . 80", "203.0.113.10 . udp . 53")),
        ("inet", "services-v6", "add", ("2001:db8:113::10 . sctp . 9000",)),
    ],
    "allowed_intervals": [
        (
            "inet",
            "allowed-v4",
            "add",
            ("203.0.113.10 . tcp . 80 . 198.51.100.0/25", "203.0.113.10 . tcp . 80 . 192.0.2.7"),
        ),
        ("inet", "allowed-v6", "add", ("2001:db8:113::10 . tcp . 80 . 2001:db8:51::/48",)),
    ],
    "dnat_verdicts": [
        ("inet", "dnat-v4", "add", ("203.0.113.10 . tcp . 80 : goto dnat-v4-509-flow",)),
    ],
    "ports": [
        ("inet", "ports-v4", "add", ("203.0.113.10 . tcp . 80 : 8080",)),
        ("inet", "ports-v6", "add", ("2001:db8:113::10 . udp . 53 : 5353",)),
    ],
    "backends": [
        (
            "inet",
            "backends-v4",
            "add",
            (
                "203.0.113.10 . tcp . 80 . 0 : 198.18.1.2",
                "203.0.113.10 . tcp . 80 . 258 : 198.18.1.3",
            ),
        ),
        ("inet", "backends-v6", "add", ("2001:db8:113::10 . udp . 53 . 508 : 2001:db8:1::2",)),
    ],
    "netdev_dsr": [
        ("netdev", "services-v4", "add", ("203.0.113.10 . tcp . 80 : goto dsr-v4-509-flow",)),
        ("netdev", "node/n2/slots-v4", "add", ("203.0.113.10 . tcp . 80 . 5",)),
        ("netdev", "node/n2/slots-v6", "add", ("2001:db8:113::10 . tcp . 80 . 70000",)),
    ],
    "deletions": [
        ("inet", "backends-v4", "delete", ("203.0.113.10 . tcp . 80 . 258",)),
        ("inet", "allowed-v4", "delete", ("203.0.113.10 . tcp . 80 . 198.51.100.0/25",)),
        ("inet", "dnat-v6", "delete", ("2001:db8:113::10 . tcp . 443",)),
        ("inet", "vips-v4", "add", ("203.0.113.12",)),
    ],
}


def script(case: str) -> str:
    return "".join(
        f"{verb} element {family} herald {container} {{ {', '.join(texts)} }}\n"
        for family, container, verb, texts in CASES[case]
    )


def known() -> dict[tuple[str, str], Layout]:
    return layouts(render(SCENARIOS["dsr"], NODE).base)


def element(family: str, container: str, text: str) -> Element:
    key, _, value = text.partition(" : ")
    return Element(family, container, key, value)


def encode(case: str, seq: int = 0) -> bytes:
    batch = Batch(known())
    for family, container, verb, texts in CASES[case]:
        elements = [element(family, container, t) for t in texts]
        (batch.add if verb == "add" else batch.delete)(elements)
    return b"".join(batch.messages(seq))


def without_set_id(data: bytes) -> bytes:
    """nft's batch without NFTA_SET_ELEM_LIST_SET_ID in its element messages."""
    out = b""
    offset = 0
    while offset < len(data):
        size, kind, flags, seq, pid = struct.unpack_from("=IHHII", data, offset)
        message = data[offset : offset + size]
        if kind & 0xFF in (NFT_MSG_NEWSETELEM, NFT_MSG_DELSETELEM):
            body = message[20:]
            kept = b""
            at = 0
            while at < len(body):
                length, attr_kind = struct.unpack_from("=HH", body, at)
                padded = length + (-length % 4)
                if attr_kind & 0x7FFF != NFTA_SET_ELEM_LIST_SET_ID:
                    kept += body[at : at + padded]
                at += padded
            header = struct.pack("=IHHII", 20 + len(kept), kind, flags, seq, pid)
            message = header + message[16:20] + kept
        out += message
        offset += size
    return out


def split(data: bytes) -> list[bytes]:
    messages = []
    while data:
        (size,) = struct.unpack_from("=I", data)
        messages.append(data[:size])
        data = data[size:]
    return messages


def golden(case: str) -> bytes:
    return without_set_id(bytes.fromhex((GOLDEN / f"{case}.hex").read_text()))


@pytest.mark.parametrize("case", sorted(CASES))
def test_batches_are_what_nft_sends(case: str) -> None:
    assert encode(case) == golden(case)


def test_slot_tables_encode_like_their_elements() -> None:
    values = ["" for _ in range(509)]
    values[0], values[258] = "198.18.1.2", "198.18.1.3"
    slots = SlotMap("inet", "backends-v4", "203.0.113.10 . tcp . 80", tuple(values))
    batch = Batch(known()).add_slots(slots)
    assert batch.messages()[1] == split(golden("backends"))[1]
    by_text = Batch(known()).add(slots.elements(range(509)))
    assert batch.messages() == by_text.messages()
    assert batch.elements == 2


def test_a_dsr_slot_set_holds_members_without_values() -> None:
    owned = ("", "n2", "", "n2")
    slots = SlotMap("netdev", "node/n2/slots-v4", "203.0.113.10 . tcp . 80", owned, member=True)
    assert Batch(known()).add_slots(slots).messages() == (
        Batch(known()).add(slots.elements(range(4))).messages()
    )


def test_many_elements_split_into_messages_under_64_kib() -> None:
    values = tuple(f"198.18.{i % 200}.{i % 250 + 1}" for i in range(16_381))
    slots = SlotMap("inet", "backends-v4", "203.0.113.10 . tcp . 80", values)
    messages = Batch(known()).add_slots(slots).messages()
    assert len(messages) > 3
    for message in messages[1:-1]:
        # The elements attribute comes last; its 16-bit length must not have wrapped.
        at = 20
        while at < len(message):
            length, kind = struct.unpack_from("=HH", message, at)
            last = at
            at += length + (-length % 4)
        assert kind == 0x8003 and last + length == len(message)
    seqs = [struct.unpack_from("=I", m, 8)[0] for m in messages]
    assert seqs == list(range(len(messages)))


def test_refusals_before_the_kernel() -> None:
    batch = Batch(known())
    with pytest.raises(UnknownLayout):
        batch.add([Element("inet", "no-such-map", "203.0.113.10")])
    with pytest.raises(ValueError, match="fields"):
        batch.add([Element("inet", "services-v4", "203.0.113.10 . tcp")])
    with pytest.raises(ValueError, match="type"):
        batch.add([Element("inet", "vips-v4", "2001:db8::1")])
    with pytest.raises(ValueError, match="needs a value"):
        batch.add([Element("inet", "ports-v4", "203.0.113.10 . tcp . 80")])
    assert batch.elements == 0 and not batch.parts


def test_an_empty_batch_is_begin_and_end_only() -> None:
    messages = Batch(known()).messages(7)
    assert [struct.unpack_from("=HHI", m, 4) for m in messages] == [(0x10, 1, 7), (0x11, 1, 8)]


def declared_elements(script: str, name: str) -> str:
    """The `elements = { … }` of the declaration of `name` in a text script ('' if none)."""
    found = re.search(rf"\t(?:map|set) {re.escape(name)} {{\n(.*?)\n\t}}\n", script, re.S)
    assert found is not None, name
    body = found.group(1)
    return body[body.index("elements = {") :] if "elements = {" in body else ""


def element_bodies(messages: list[bytes]) -> list[bytes]:
    """Every element's attributes in element messages, without the numbered headers."""
    found = []
    for message in messages:
        at = 20
        while at < len(message):
            length, kind = struct.unpack_from("=HH", message, at)
            if kind == 0x8003:
                inner = at + 4
                while inner < at + length:
                    size, _ = struct.unpack_from("=HH", message, inner)
                    found.append(message[inner + 4 : inner + size])
                    inner += size + (-size % 4)
            at += length + (-length % 4)
    return found


def test_a_resync_sends_elements_between_closing_and_opening_the_services() -> None:
    affinity = SCENARIOS["client_ip_affinity"]  # a Maglev table of its own
    services = [*SCENARIOS["shared_vip"], *SCENARIOS["dual_stack_udp_sctp"], *affinity]
    ruleset = render(services, NODE)
    first, *deferred, last = resync_steps(ruleset, {}, 700)
    assert isinstance(first, str) and isinstance(last, str)
    batches = [step() for step in deferred if not isinstance(step, str)]
    # The first transaction closes every served key and holds no slot, no member and
    # no entry; the services' keys (with their counters) are there.
    assert "203.0.113.10 . tcp . 80" in declared_elements(first, "unserved-v4")
    assert declared_elements(first, "backends-v4") == ""
    assert declared_elements(first, "members-v4-0") == ""
    assert declared_elements(first, "dnat-v4") == ""
    assert "203.0.113.10 . tcp . 80" in declared_elements(first, "services-v4")
    # The last one opens them.
    assert last.startswith("delete element inet herald unserved-v4")
    assert "add element inet herald dnat-v4" in last
    sent_batches = [b for b in batches if isinstance(b, Batch)]
    assert len(sent_batches) == len(batches) > 1
    assert all(0 < b.elements <= 700 for b in sent_batches)
    # Element for element, what the text path writes between the first and the last.
    texted = Batch(layouts(ruleset.base))
    text_only = {"services-v4", "services-v6", "unserved-v4", "unserved-v6", "dnat-v4", "dnat-v6"}
    for rules in ruleset.services:
        texted.add(e for e in rules.elements if e.container not in text_only)
        for table in rules.slots:
            texted.add(table.elements(range(len(table.values))))
    sent = [m for b in sent_batches for m in b.messages()[1:-1]]
    assert sorted(set(element_bodies(sent))) == sorted(set(element_bodies(texted.messages()[1:-1])))
    assert sum(b.elements for b in sent_batches) > 509


def test_without_a_netlink_socket_the_datapath_writes_text() -> None:
    """A namespace that does not exist (or no root): the text path does everything."""
    datapath = Datapath(NODE, Nft("nlnft-no-such-namespace"))
    assert datapath.netlink and datapath.elements is None
    recorded: list[str] = []

    def fake(argv: Sequence[str], stdin: str) -> subprocess.CompletedProcess[str]:
        recorded.append(stdin)
        return subprocess.CompletedProcess(list(argv), 0, '{"nftables": []}', "")

    faked = Datapath(NODE, Nft("nlnft-x", runner=fake))
    assert faked.elements is None, "a fake nft records text: no netlink behind its back"
    faked.resync(SCENARIOS["snat"])
    assert any("203.0.113.10 . tcp . 80 : 198.18.1.2" in script for script in recorded)
