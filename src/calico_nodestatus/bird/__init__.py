"""BIRD's control socket: an async client (client.py, the only I/O here), pure parsers for BIRD 1.6
and 2.x replies (parse.py), their typed records (types.py) and protocol-name decoding (names.py)."""
