"""Plain helpers for tests (importable because pytest puts tests/ on sys.path)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

REPO = Path(__file__).resolve().parent.parent


def params_of(plan: Any) -> list[dict[str, Any]]:
    """Parameters of every run of a Plan, in order."""
    return [dict(run.params) for run in plan.expansion.runs]
