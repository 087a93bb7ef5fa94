"""expdeploy: deploy experiment grids to local GPUs, Slurm, SSH hosts or W&B sweep agents.

Inside a run: `expdeploy.log(step=3, loss=0.2)` and `expdeploy.summary(val_acc=0.9)`."""

from expdeploy.runlog import log, summary

__all__ = ["log", "summary"]
__version__ = "0.1.0"
