"""Runs the test suite; fails when pytest collected no tests (pytest exit code 5) and when a test
skips without an entry in tests/allowed-skips.txt (a missing binary is a broken install)."""

import subprocess
import sys

NO_TESTS_COLLECTED = 5

ALLOWED_SKIPS = "tests/allowed-skips.txt"

result = subprocess.run(
    [sys.executable, "-m", "pytest", f"--allowed-skips={ALLOWED_SKIPS}", *sys.argv[1:]], check=False
)
if result.returncode == NO_TESTS_COLLECTED:
    print("error: pytest collected no tests", file=sys.stderr)
    sys.exit(1)
sys.exit(result.returncode)
