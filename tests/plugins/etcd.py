"""pytest fixtures: etcd (filled in by its owner)."""
