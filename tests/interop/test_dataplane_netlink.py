"""Elements written as netlink batches give the kernel what nft gives it.

- Golden: nft's own batches for the cases of tests/unit/dataplane/test_netlink_nft.py,
  captured live with strace in a namespace, equal the encoder's bytes and the stored
  golden files.
- Equivalence: the same services, changes and chunked resyncs through the text path
  (`Datapath(netlink=False)`) and the netlink path in two namespaces leave identical
  `nft list table inet herald` and `netdev herald`.
- Failure: a batch the kernel refuses changes nothing; a refused service is named and the
  other services of the same sync apply, with no element of the refused one written.

Set REGENERATE_NETLINK_GOLDEN=1 to rewrite the golden files from the capture.
"""

from __future__ import annotations

import os
import re
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import replace
from ipaddress import ip_address
from pathlib import Path

import pytest

sys.path.insert(0, str(Path(__file__).resolve().parents[1] / "unit" / "dataplane"))

from scenarios import NODE, SCENARIOS, web
from test_netlink_nft import CASES, GOLDEN, encode, script, without_set_id

from herald.dataplane.apply import ApplyError, Datapath, Nft
from herald.dataplane.model import DataplaneService
from herald.dataplane.netlink_nft import Batch, NetlinkElements, layouts
from herald.dataplane.render import Element, declare, render
from herald.lab.netns import Lab

pytestmark = pytest.mark.netns
MODES = ("text", "netlink", "gold")


@pytest.fixture
def namespaces() -> Iterator[dict[str, str]]:
    with Lab(prefix="nlnft-") as lab:
        for mode in MODES:
            lab.host(mode)
            # The DSR scenario forwards out of eth0 (this kernel has no dummy links).
            veth = ["ip", "-n", lab.ns(mode), "link", "add", "eth0", "type", "veth"]
            subprocess.run([*veth, "peer", "name", "eth1"], check=True)
        yield {mode: lab.ns(mode) for mode in MODES}


def nft(namespace: str, *argv: str, stdin: str = "") -> str:
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, "nft", *argv],
        input=stdin,
        capture_output=True,
        text=True,
        check=True,
    )
    return done.stdout


def tables(namespace: str) -> str:
    listed = nft(namespace, "list", "tables")
    return "".join(
        nft(namespace, "list", "table", *line.split()[1:])
        for line in sorted(listed.splitlines())
        if line.endswith(" herald")
    )


def captured(namespace: str, commands: str) -> bytes:
    """What `nft -f` sends to the kernel for `commands`, from strace's dump of sendmsg."""
    strace = ["strace", "-f", "-qq", "-e", "trace=sendmsg", "-e", "write=all", "-xx", "-s", "0"]
    done = subprocess.run(
        ["ip", "netns", "exec", namespace, *strace, "nft", "-f", "-"],
        input=commands,
        capture_output=True,
        text=True,
        check=False,
    )
    data = bytearray()
    for line in done.stderr.splitlines():
        if re.match(r"\s*\| [0-9a-f]{5}  ", line):
            start = line.index("|") + 9
            data += bytes.fromhex(line[start : start + 49].replace(" ", ""))
    return bytes(data)


def test_element_batches_are_byte_for_byte_what_nft_sends(namespaces: dict[str, str]) -> None:
    gold = namespaces["gold"]
    nft(gold, "-f", "-", stdin=declare(render(SCENARIOS["dsr"], NODE).base, {}))
    regenerate = os.environ.get("REGENERATE_NETLINK_GOLDEN") == "1"
    for case in sorted(CASES):
        raw = captured(gold, script(case))
        assert raw, f"{case}: nothing captured (is strace installed?)"
        if regenerate:
            GOLDEN.mkdir(exist_ok=True)
            (GOLDEN / f"{case}.hex").write_text(raw.hex() + "\n")
        assert (GOLDEN / f"{case}.hex").read_text().strip() == raw.hex(), case
        assert encode(case) == without_set_id(raw), case


def sequence() -> list[list[DataplaneService]]:
    """Each scenario in turn (every change a sync), then several side by side."""
    steps = [list(services) for services in SCENARIOS.values()]
    side_by_side = [*SCENARIOS["shared_vip"], *SCENARIOS["dual_stack_udp_sctp"]]
    for number, name in enumerate(("dsr", "source_ranges", "local_dsr", "weighted"), 30):
        service = SCENARIOS[name][0]
        vips = tuple(
            ip_address(f"203.0.113.{number}")
            if v.version == 4
            else ip_address(f"2001:db8::{number}")
            for v in service.vips
        )
        side_by_side.append(replace(service, key=f"default/{name}", vips=vips))
    steps.append(side_by_side)
    return steps


def test_the_text_and_the_netlink_paths_leave_the_same_tables(
    namespaces: dict[str, str],
) -> None:
    paths = {
        "text": Datapath(NODE, Nft(namespaces["text"]), netlink=False),
        "netlink": Datapath(NODE, Nft(namespaces["netlink"])),
    }
    assert paths["netlink"].elements is not None and paths["text"].elements is None
    for step in sequence():
        for datapath in paths.values():
            datapath.sync(step)
        text, netlink = tables(namespaces["text"]), tables(namespaces["netlink"])
        assert "table inet herald" in text
        assert netlink == text
    # A resync split into transactions of 100 slots (netlink: batches) ends the same.
    everything = sequence()[-1]
    for mode, datapath in paths.items():
        chunked = Datapath(NODE, Nft(namespaces[mode]), netlink=datapath.netlink)
        chunked.resync_chunk = 100
        chunked.resync(everything)
    assert "table netdev herald" in tables(namespaces["text"])
    assert tables(namespaces["netlink"]) == tables(namespaces["text"])


def test_a_refused_batch_changes_nothing(namespaces: dict[str, str]) -> None:
    name = namespaces["netlink"]
    datapath = Datapath(NODE, Nft(name))
    datapath.resync(SCENARIOS["dsr"])
    before = tables(name)
    writer = NetlinkElements(name)
    batch = Batch(layouts(datapath.base)).add(
        [
            Element("inet", "vips-v4", "203.0.113.99"),
            Element("inet", "dnat-v4", "203.0.113.99 . tcp . 80", "goto no-such-chain"),
        ]
    )
    error = writer.commit(batch)
    assert error is not None and "dnat-v4" in error and "No such file" in error
    assert tables(name) == before
    # The socket is usable again: a good batch commits.
    good = Batch(layouts(datapath.base)).add([Element("inet", "vips-v4", "203.0.113.99")])
    assert writer.commit(good) is None
    assert "203.0.113.99" in nft(name, "list", "set", "inet", "herald", "vips-v4")
    writer.close()


def test_a_refused_service_is_named_and_the_others_apply(namespaces: dict[str, str]) -> None:
    """Someone else's element holds service b's key with another port: the kernel refuses
    b's elements (EEXIST), a is applied, and nothing of b is written."""
    seen = {}
    for mode in ("text", "netlink"):
        name = namespaces[mode]
        datapath = Datapath(NODE, Nft(name), netlink=mode == "netlink")
        datapath.sync([web()])
        nft(name, "add", "element", "inet", "herald", "ports-v4", "{ 203.0.113.21 . tcp . 80 : 1 }")
        a = web(key="default/a", vips=(ip_address("203.0.113.20"),))
        b = web(key="default/b", vips=(ip_address("203.0.113.21"),))
        with pytest.raises(ApplyError) as refused:
            datapath.sync([web(), a, b])
        assert refused.value.services == ("default/b",)
        members = nft(name, "list", "map", "inet", "herald", "members-v4-0")
        assert "203.0.113.20 . tcp . 80" in members
        assert "203.0.113.21" not in members
        assert "203.0.113.21" not in nft(name, "list", "set", "inet", "herald", "vips-v4")
        # The other holder goes: b is retried on the next sync and applies.
        nft(name, "delete", "element", "inet", "herald", "ports-v4", "{ 203.0.113.21 . tcp . 80 }")
        datapath.sync([web(), a, replace(b)])
        seen[mode] = tables(name)
    assert "203.0.113.21 . tcp . 80" in seen["netlink"]
    assert seen["netlink"] == seen["text"]
