"""herald.dataplane"""
