"""Who may use the search service and how much: its bearer token, request limits and audit log (Ray-free)."""
