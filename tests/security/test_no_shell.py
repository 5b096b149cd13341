"""No shell strings anywhere in the product: every external command is an argv list.

An AST scan of src/ for the constructs that run a shell or parse a command string, and a check
that ruff's injection rules (flake8-bandit `S`) are enabled for src/ and pass."""

from __future__ import annotations

import ast
import subprocess
import sys
import tomllib
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
SOURCES = sorted((REPO / "src").rglob("*.py"))
SPAWNERS = {"run", "Popen", "call", "check_call", "check_output", "create_subprocess_exec"}
SHELL_CALLS = {("os", "system"), ("os", "popen"), ("asyncio", "create_subprocess_shell")}
INJECTION_RULES = ["S602", "S604", "S605", "S606", "S609"]


def _dotted(node: ast.expr) -> tuple[str, ...]:
    if isinstance(node, ast.Name):
        return (node.id,)
    if isinstance(node, ast.Attribute):
        return (*_dotted(node.value), node.attr)
    return ()


def shell_uses(tree: ast.AST) -> list[tuple[int, str]]:
    """(line, what) for every shell=True, os.system/os.popen/create_subprocess_shell, and every
    subprocess call whose command is a string (literal, f-string or concatenation)."""
    found: list[tuple[int, str]] = []
    for node in ast.walk(tree):
        if not isinstance(node, ast.Call):
            continue
        name = _dotted(node.func)
        if name[-2:] in SHELL_CALLS:
            found.append((node.lineno, ".".join(name)))
        for keyword in node.keywords:
            if keyword.arg == "shell" and not (
                isinstance(keyword.value, ast.Constant) and keyword.value.value is False
            ):
                found.append((node.lineno, "shell= not False"))
        if name and name[-1] in SPAWNERS and node.args:
            command = node.args[0]
            is_text = isinstance(command, ast.JoinedStr | ast.BinOp) or (
                isinstance(command, ast.Constant) and isinstance(command.value, str)
            )
            if is_text:
                found.append((node.lineno, f"{'.'.join(name)} with a string command"))
    return found


def test_the_scan_finds_what_it_looks_for() -> None:
    bad = """
import os, subprocess, asyncio
subprocess.run("ip link", shell=True)
subprocess.Popen(f"birdc {x}")
os.system("ls")
os.popen("ls")
asyncio.create_subprocess_shell("ls")
subprocess.check_output("a" + b)
"""
    assert len(shell_uses(ast.parse(bad))) == 7
    good = "import subprocess\nsubprocess.run(['ip', 'link'], check=True, shell=False)\n"
    assert shell_uses(ast.parse(good)) == []


@pytest.mark.parametrize("path", SOURCES, ids=lambda p: str(p.relative_to(REPO / "src")))
def test_no_shell_strings(path: Path) -> None:
    assert shell_uses(ast.parse(path.read_text(), filename=str(path))) == []


def test_ruff_injection_rules_enabled_and_clean() -> None:
    lint = tomllib.loads((REPO / "pyproject.toml").read_text())["tool"]["ruff"]["lint"]
    assert "S" in lint["select"]
    assert not set(INJECTION_RULES) & set(lint.get("ignore", []))
    ignores = lint.get("per-file-ignores", {})
    per_src = [rules for pattern, rules in ignores.items() if pattern.startswith("src")]
    assert not any("S" in rules or set(INJECTION_RULES) & set(rules) for rules in per_src)
    ruff = Path(sys.executable).with_name("ruff")
    result = subprocess.run(
        [str(ruff), "check", "--select", ",".join(INJECTION_RULES), "src"],
        cwd=REPO,
        capture_output=True,
        text=True,
        check=False,
    )
    assert result.returncode == 0, result.stdout
