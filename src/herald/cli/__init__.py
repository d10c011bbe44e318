"""herald's command line."""
