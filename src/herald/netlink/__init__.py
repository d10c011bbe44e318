"""The only package that speaks netlink (pyroute2)."""
