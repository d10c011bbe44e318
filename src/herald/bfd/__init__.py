"""BFD (RFC 5880/5881): control packets, the session state machine, and the UDP shell."""
