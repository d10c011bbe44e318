"""L2 announcements: owner choice, agent heartbeats, ARP/NDP packets and the responder."""
