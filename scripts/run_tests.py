"""Runs the test suite; fails when pytest collected no tests (pytest exit code 5)."""

import subprocess
import sys

NO_TESTS_COLLECTED = 5

result = subprocess.run([sys.executable, "-m", "pytest", *sys.argv[1:]], check=False)
if result.returncode == NO_TESTS_COLLECTED:
    print("error: pytest collected no tests", file=sys.stderr)
    sys.exit(1)
sys.exit(result.returncode)
