from __future__ import annotations

import pytest

from herald.dataplane.render import INET_BASE
from herald.observe import rules


def test_every_prefix_names_its_verdict_and_nothing_else_does() -> None:
    for verdict in rules.VERDICTS:
        assert rules.parse_prefix(verdict.prefix) == verdict
        assert rules.parse_prefix(verdict.prefix + " ") == verdict
    assert len({v.prefix for v in rules.VERDICTS}) == len(rules.VERDICTS)
    assert rules.parse_prefix("herald FORWARDED something") is None
    assert rules.parse_prefix("") is None


def test_every_log_passes_the_shared_limit_first() -> None:
    chains = {o.name: o.body for o in rules.objects() if o.kind == "chain"}
    for verdict in rules.VERDICTS:
        limit, log = chains[rules.chain_of(verdict)]
        assert limit == f'limit name "{rules.LIMIT}" counter name "{rules.LOST_COUNTER}" return'
        assert log == f'log prefix "{verdict.prefix}" group {rules.LOG_GROUP} snaplen 128'


def test_refusals_are_logged_before_forwarding_and_replies_only_when_confirmed() -> None:
    (chain,) = [o for o in rules.objects() if o.name == "observe-prerouting"]
    hook, *lines = chain.body
    assert "priority -120" in hook  # after conntrack, before herald's filter and DNAT
    v4 = [line.rsplit("goto ", 1)[1] for line in lines if " ip6 " not in f" {line}"]
    assert v4 == [
        "observe-dropped-source-range-denied",
        "observe-dropped-no-usable-backend",
        "observe-dropped-no-service-port",
        "observe-forwarded",
        "observe-forwarded-reply",
    ]
    assert "ct status confirmed" in lines[4]
    # Only sets without counters: the services' counters count each packet once.
    assert all("@services-v4 goto" not in line or "!=" in line for line in lines)


def test_render_puts_them_in_herald_table() -> None:
    names = {o.name for o in INET_BASE}
    assert {o.name for o in rules.objects()} <= names


def test_flow_rate_parses_n_per_second_and_refuses_the_rest() -> None:
    assert rules.FlowRate.parse("50/s", 10) == rules.FlowRate(50, 10)
    assert rules.FlowRate.parse("50") == rules.FlowRate(50, rules.BURST)
    assert rules.FlowRate.parse("7/second").per_second == 7
    assert not rules.FlowRate.parse("0").on
    for bad in ("5/minute", "-1", "fast", "1.5/s"):
        with pytest.raises(ValueError):
            rules.FlowRate.parse(bad)
    with pytest.raises(ValueError):
        rules.FlowRate(10, 0)


def test_the_rate_script_replaces_the_limit_and_refills_the_chains_it_emptied() -> None:
    lines = rules.rate_script(rules.FlowRate(20, 5)).splitlines()
    flushed = [line for line in lines if line.startswith("flush chain")]
    assert len(flushed) == len(rules.VERDICTS)
    # The limit can only go once no rule refers to it: flushes first, then the swap.
    assert lines.index(f"delete limit inet herald {rules.LIMIT}") > lines.index(flushed[-1])
    assert f"add limit inet herald {rules.LIMIT} {{ rate over 20/second burst 5 packets }}" in lines
    chains = {o.name: o.body for o in rules.objects() if o.kind == "chain"}
    for verdict in rules.VERDICTS:
        name = rules.chain_of(verdict)
        added = [line.split(f" {name} ", 1)[1] for line in lines if line.startswith("add rule")
                 and line.split()[4] == name]  # fmt: skip
        assert tuple(added) == chains[name]  # the same rules render.py renders
    off = rules.rate_script(rules.FlowRate(0, 5)).splitlines()
    assert all(line.startswith("flush chain") for line in off)  # nothing left to log


def test_applied_rate_reads_the_listed_limit() -> None:
    listed = {"rate": 1000, "per": "second", "inv": True, "burst": 200}
    assert rules.applied_rate(listed, logging=True) == rules.FlowRate()
    assert rules.applied_rate(listed, logging=False) == rules.FlowRate(0, rules.BURST)
    assert rules.applied_rate({**listed, "per": "minute"}, logging=True) is None
    assert rules.applied_rate({**listed, "inv": False}, logging=True) is None
