"""The top-level group loads command modules on demand: the agent does not carry other commands'
dependencies, and every command is still listed and reachable."""

from __future__ import annotations

import importlib
import subprocess
import sys

import click
from click.testing import CliRunner

from calico_nodestatus.cli.main import COMMAND_MODULES, cli

# What the agent on the embedded datastore must never load (grpc: etcd; lightkube: kubernetes;
# pyroute2: autodetection/doctor; the lab and doctor packages).
NOT_FOR_THE_AGENT = (
    "grpc",
    "aetcd",
    "lightkube",
    "httpx",
    "pyroute2",
    "calico_nodestatus.lab",
    "calico_nodestatus.doctor",
)

AGENT_IMPORTS = """
import sys
from calico_nodestatus.cli.main import cli
cli.get_command(None, "agent")
import calico_nodestatus.agent.collection, calico_nodestatus.datastore.embedded
print(" ".join(name for name in sys.argv[1:] if name in sys.modules))
"""


def test_agent_on_the_embedded_datastore_loads_no_other_commands_dependencies() -> None:
    # A fresh interpreter: this test process has imported everything already.
    loaded = subprocess.run(
        [sys.executable, "-c", AGENT_IMPORTS, *NOT_FOR_THE_AGENT],
        capture_output=True,
        text=True,
        check=True,
        timeout=60,
    ).stdout.split()
    assert loaded == []


def test_each_module_registers_exactly_the_commands_mapped_to_it() -> None:
    for module_name in sorted(set(COMMAND_MODULES.values())):
        group = click.Group()
        importlib.import_module(f"calico_nodestatus.cli.{module_name}").register(group)
        mapped = {name for name, module in COMMAND_MODULES.items() if module == module_name}
        assert set(group.commands) == mapped, module_name


def test_help_lists_every_command_and_each_one_runs() -> None:
    runner = CliRunner()
    listing = runner.invoke(cli, ["--help"])
    assert listing.exit_code == 0, listing.output
    commands = listing.output.split("Commands:", 1)[1]
    listed = {line.split()[0] for line in commands.splitlines() if line.strip()}
    assert listed == set(COMMAND_MODULES)
    for name in sorted(COMMAND_MODULES):
        result = runner.invoke(cli, [name, "--help"])
        assert result.exit_code == 0, (name, result.output)
        assert f"Usage: cli {name}" in result.output


def test_unknown_command_is_an_error_naming_it() -> None:
    result = CliRunner().invoke(cli, ["no-such-command"])
    assert result.exit_code == 2
    assert "No such command 'no-such-command'" in result.output
