"""The read-only web view (`herald ui`)."""
