"""The BGP doctor: one command that says why a node's BGP sessions are not up, and what to do.

`evidence.gather_evidence(DoctorOptions)` does the I/O (BIRD sockets, TCP connects to peers,
netlink, datastore) and returns an `Evidence`; `diagnose.diagnose(Evidence) -> Report` is pure and
turns it into checks, each with a verdict (ok/warn/fail), the evidence and the remedy.
`Report.exit_code`: 0 all ok, 1 any failure, 2 warnings only.
"""

from calico_nodestatus.doctor.diagnose import diagnose
from calico_nodestatus.doctor.evidence import DoctorOptions, gather_evidence
from calico_nodestatus.doctor.model import Check, Evidence, Report, Verdict

__all__ = ["Check", "DoctorOptions", "Evidence", "Report", "Verdict", "diagnose", "gather_evidence"]
