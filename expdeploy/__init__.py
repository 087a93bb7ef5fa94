"""expdeploy: deploy experiment grids to local GPUs, Slurm, SSH hosts or W&B sweep agents.

Inside a run: `expdeploy.log(step=3, loss=0.2)` and `expdeploy.summary(val_acc=0.9)`.
In a notebook: `expdeploy.load("experiments/NAME").to_pandas()`."""

from typing import TYPE_CHECKING, Any

from expdeploy.runlog import log, summary

if TYPE_CHECKING:
    from expdeploy.notebook import Runs, load

__all__ = ["Runs", "load", "log", "summary"]
__version__ = "0.1.0"


def __getattr__(name: str) -> Any:
    # Runs import this package: the notebook API (ledger, results, plugins) loads only when asked for.
    if name in ("Runs", "load"):
        from expdeploy import notebook

        return getattr(notebook, name)
    raise AttributeError(f"module 'expdeploy' has no attribute {name!r}")
