"""Parsed BIRD data → CalicoNodeStatus status sections. sections.py is the pure mapping (one place
per rule: FIB/RIB, source types, peer states); gather.py is the one async entry point that queries
BIRD for the requested classes and families and hands the records to sections.py."""
