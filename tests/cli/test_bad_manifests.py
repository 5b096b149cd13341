"""The bad-input corpus through the CLI: one `Error:` line naming the field, exit 1, nothing written."""

from __future__ import annotations

from pathlib import Path

import pytest

from tests.api.test_manifests import expected_fragment
from tests.cli.conftest import MANIFESTS, CliTarget, manifest

BAD = sorted((MANIFESTS / "bad").glob("*.yaml"))


@pytest.mark.parametrize("path", BAD, ids=[path.stem for path in BAD])
def test_bad_manifest_is_refused_and_nothing_is_written(target: CliTarget, path: Path) -> None:
    # Objects some corpus files would touch if anything got through.
    target.ok("create", "-f", "-", stdin=manifest("good-1") + "---\n" + manifest("status-a"))
    before, raw_before = target.stored(), target.raw_content()
    assert set(raw_before) == {"good-1", "status-a"}
    for verb in ("create", "apply", "replace"):
        result = target.run(verb, "-f", str(path))
        assert result.exit_code == 1, (verb, result.output)
        assert result.stdout == ""
        (line,) = result.stderr.splitlines()
        assert line.startswith("Error: ")
        assert expected_fragment(path) in line
    # Read from the backend itself too (etcd: Calico's keys and their mod_revisions).
    assert target.raw_content() == raw_before
    assert target.stored() == before


def test_one_bad_document_via_stdin_writes_none(target: CliTarget) -> None:
    text = manifest("first") + "---\n" + manifest("second", period=-3)
    result = target.run("create", "-f", "-", stdin=text)
    assert result.exit_code == 1
    assert "document 2: error with field Spec.UpdatePeriodSeconds = '-3'" in result.stderr
    assert target.raw_content() == {}
    assert target.stored() == []
