"""Real services the integration tests start and stop themselves: Slurm, sshd (pytest plugins)."""
