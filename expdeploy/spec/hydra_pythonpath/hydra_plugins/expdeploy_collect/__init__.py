"""expdeploy's Hydra launcher plugin, found by Hydra in the `hydra_plugins` namespace package
when expdeploy puts this directory's parent first on PYTHONPATH to collect a sweep's jobs."""
