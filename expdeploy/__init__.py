"""expdeploy: deploy experiment grids to local GPUs, Slurm, SSH hosts or W&B sweep agents."""

__version__ = "0.1.0"
