"""bird package."""
