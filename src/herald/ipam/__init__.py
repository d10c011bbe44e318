"""herald.ipam"""
