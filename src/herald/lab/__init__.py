"""herald.lab: network-namespace test networks."""
