"""herald.api"""
