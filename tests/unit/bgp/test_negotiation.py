"""What two capability lists agree on."""

from __future__ import annotations

from herald.bgp.wire import (
    IPV4_UNICAST,
    IPV6_UNICAST,
    AddPath,
    AddPathFamily,
    AddPathMode,
    ExtendedMessage,
    FourOctetAs,
    MultiProtocol,
    negotiate,
)


def test_no_capabilities_means_rfc4271_ipv4() -> None:
    agreed = negotiate([], [])
    assert agreed.families == {IPV4_UNICAST}
    assert not agreed.four_octet_as
    assert agreed.max_message_size == 4096


def test_each_feature_needs_both_sides() -> None:
    ours = [MultiProtocol(IPV4_UNICAST), MultiProtocol(IPV6_UNICAST), FourOctetAs(64512)]
    ours += [ExtendedMessage()]
    agreed = negotiate(ours, [MultiProtocol(IPV6_UNICAST), FourOctetAs(64513)])
    assert agreed.families == {IPV6_UNICAST}
    assert agreed.four_octet_as
    assert not agreed.extended_message
    assert negotiate(ours, ours).max_message_size == 65535


def test_add_path_needs_opposite_roles() -> None:
    families = [MultiProtocol(IPV4_UNICAST), MultiProtocol(IPV6_UNICAST)]
    ours = AddPath(
        (
            AddPathFamily(IPV4_UNICAST, AddPathMode.RECEIVE),
            AddPathFamily(IPV6_UNICAST, AddPathMode.BOTH),
        )
    )
    theirs = AddPath(
        (
            AddPathFamily(IPV4_UNICAST, AddPathMode.RECEIVE),
            AddPathFamily(IPV6_UNICAST, AddPathMode.SEND),
        )
    )
    agreed = negotiate([*families, ours], [*families, theirs])
    assert agreed.add_path_receive == {IPV6_UNICAST}
    assert agreed.add_path_send == frozenset()
