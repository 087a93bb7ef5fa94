"""`expdeploy --help` stays light: no heavy dependency is imported to show it."""

from __future__ import annotations

import json
import subprocess
import sys

HEAVY = ("wandb", "fabric", "paramiko", "pynvml", "spython", "yaml")

PROBE = """
import json, sys
sys.argv = ["expdeploy", "--help"]
from expdeploy.cli import main
try:
    main()
except SystemExit:
    pass
print(json.dumps(sorted(m for m in sys.modules)))
"""


def test_help_imports_no_heavy_dependency() -> None:
    done = subprocess.run([sys.executable, "-c", PROBE], capture_output=True, text=True, check=True)
    modules = set(json.loads(done.stdout.strip().splitlines()[-1]))
    assert "typer" in modules
    for heavy in HEAVY:
        assert heavy not in modules, f"`expdeploy --help` imported {heavy}"
