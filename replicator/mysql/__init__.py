"""MySQL adapter: connections, procedures by engine generation, replica status."""
