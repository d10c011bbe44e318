"""herald.bgp.wire"""
