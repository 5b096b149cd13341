"""The one result type every health check returns, so the CLI can report all of them alike."""

from __future__ import annotations

from typing import Any

from pydantic import BaseModel, ConfigDict, Field


class CheckResult(BaseModel):
    """Outcome of one check (`bird-ready`, `bird6-live`, `status-file-ready`, ...).

    ``message`` is the line a user sees; failures use calico-node's wording so existing alerts and
    runbooks keep matching. ``details`` carries the evidence (peer lists, timings) for `-o json`.
    """

    model_config = ConfigDict(frozen=True)

    check: str
    ok: bool
    message: str
    details: dict[str, Any] = Field(default_factory=dict)
