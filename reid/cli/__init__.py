"""The `reid` command line."""
