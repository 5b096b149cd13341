"""pytest fixtures: lab (filled in by its owner)."""
