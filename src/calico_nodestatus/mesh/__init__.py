"""The fleet's BGP mesh from the datastore alone: both ends of every session side by side, and
verdicts that say where a failure is (analysis.py), rendered as text, data or Graphviz (render.py).
Pure: the objects, the live nodes and the time are passed in."""

from calico_nodestatus.mesh.analysis import (
    AgentState,
    Cell,
    CellStatus,
    Mesh,
    NodeView,
    SessionView,
    Verdict,
    VerdictKind,
    build_mesh,
)
from calico_nodestatus.mesh.render import render_dot, render_text, to_data

__all__ = [
    "AgentState",
    "Cell",
    "CellStatus",
    "Mesh",
    "NodeView",
    "SessionView",
    "Verdict",
    "VerdictKind",
    "build_mesh",
    "render_dot",
    "render_text",
    "to_data",
]
