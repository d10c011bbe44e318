from __future__ import annotations

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
