"""calico-nodestatus: Calico's node status subsystem (CalicoNodeStatus), reimplemented in Python."""

__version__ = "0.1.0"
