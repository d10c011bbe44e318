"""herald.bgp"""
