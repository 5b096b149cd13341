"""The `calico-nodestatus` command: click commands that map flags onto typed settings, call the
packages below and render results and errors once. Command modules load lazily (main.py)."""
