"""The controller: LB-IPAM over the source's snapshots, writing Service and pool status."""
