"""Prometheus metrics: each process's own registry and its /metrics endpoint.

`agent.py` and `controller.py` read what the process already knows (the agent's status,
the controller's last IPAM decision) when a scrape comes, and count the few events that a
reading cannot recover (datapath applies, ownership changes, allocation failures);
`server.py` serves them on the process's event loop without ever blocking it. The names,
and the MetalLB and Cilium metrics they stand for, are listed in docs/observability.md.
"""
