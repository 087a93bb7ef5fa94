"""The container layer of a run's environment: `docker:` (Docker or podman) and `singularity:`
(Singularity or Apptainer). The experiment and working directories, and the Python layer's
prefix, are mounted at their own absolute paths; the run's variables and secrets cross by
name; the user's command runs inside with `sh -c`."""

from __future__ import annotations

import os
import shlex
import shutil
import subprocess
from collections.abc import Mapping
from typing import Any

from expdeploy.plugins import hookimpl
from expdeploy.wrapping import CONTAINER, RUN_VARIABLES, SECRETS, Fail, RunContext, Wrapper

RUNTIMES = ("docker", "podman")
# picked where the run executes: clusters have one or the other
SINGULARITY = '"$(command -v apptainer || command -v singularity || echo singularity)"'


def _strings(env: Mapping[str, Any], key: str, fail: Fail) -> None:
    value = env.get(key)
    if value is not None and not (isinstance(value, list) and all(isinstance(v, str) for v in value)):
        raise fail(key, f"expected a list of strings, got {value!r}", None)


def _flag(env: Mapping[str, Any], key: str, fail: Fail) -> None:
    if key in env and not isinstance(env[key], bool):
        raise fail(key, f"expected true or false, got {env[key]!r}", None)


def _mounts(env: Mapping[str, Any], run: RunContext, inner: Wrapper | None, key: str) -> list[str]:
    """Each path at its own path, in order: the working directory, the experiment (unless it is
    inside the first), the Python layer (its base installation read-only), then the user's own."""
    seen: dict[str, bool] = {}
    for path, readonly in [(run.cwd, False), (run.exp_dir, False), *(inner.mounts(env) if inner else [])]:
        inside = any(path == p or path.startswith(p.rstrip("/") + "/") for p, ro in seen.items() if not ro)
        if not inside:
            seen[path] = readonly
    return [*(f"{p}:{p}:ro" if ro else f"{p}:{p}" for p, ro in seen.items()), *env.get(key, [])]


class Docker:
    """`docker: image:tag` with `runtime: podman` for podman; `mounts`, `gpus: all`, `args`, `pass`."""

    name = "docker"
    layer = CONTAINER
    options = ("runtime", "mounts", "gpus", "args", "pass")

    def check(self, env: Mapping[str, Any], fail: Fail) -> None:
        if not isinstance(env["docker"], str) or not env["docker"].strip():
            raise fail("docker", f"expected an image name, got {env['docker']!r}",
                       "e.g. docker: pytorch/pytorch:2.3")
        if env.get("runtime", "docker") not in RUNTIMES:
            raise fail("runtime", f"unknown runtime {env['runtime']!r}", f"one of {', '.join(RUNTIMES)}")
        if env.get("gpus") not in (None, "all"):
            raise fail("gpus", f"expected `all`, got {env['gpus']!r}",
                       "without it a run gets the GPUs the backend assigned to it")
        for key in ("mounts", "args", "pass"):
            _strings(env, key, fail)

    def container_name(self, run: RunContext) -> str:
        return f"ed-{run.run_id}-\"$EXPDEPLOY_ATTEMPT\""

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        runtime = env.get("runtime", "docker")
        words = [runtime, "run", "--rm", "--name", self.container_name(run), "--init",
                 "--user", '"$(id -u):$(id -g)"']
        for mount in _mounts(env, run, inner, "mounts"):
            words += ["-v", shlex.quote(mount)]
        words += ["-w", shlex.quote(run.cwd)]
        names = [*RUN_VARIABLES, *run.variables, *SECRETS, *env.get("pass", [])]
        if env.get("gpus") == "all":
            words += ["--gpus", "all"]
        elif run.gpus:
            # the container sees only these GPUs, numbered from 0: CUDA_VISIBLE_DEVICES stays outside
            words += ["--gpus", '"device=$CUDA_VISIBLE_DEVICES"']
        else:
            names.insert(0, "CUDA_VISIBLE_DEVICES")
        for name in names:
            words += ["-e", name]
        words += [shlex.quote(a) for a in env.get("args", [])]
        words += [shlex.quote(env["docker"]), "sh", "-c", shlex.quote(command)]
        return " ".join(words)

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        return []

    def stop(self, env: Mapping[str, Any], run: RunContext) -> str | None:
        return f"{env.get('runtime', 'docker')} rm -f {self.container_name(run)} >/dev/null 2>&1 || true"

    def problem(self, env: Mapping[str, Any]) -> str | None:
        runtime = env.get("runtime", "docker")
        if not shutil.which(runtime):
            return f"{runtime} is not installed here (needed for image {env['docker']})"
        try:
            found = subprocess.run([runtime, "image", "inspect", env["docker"]], capture_output=True,
                                   text=True, timeout=60, check=False)
        except (OSError, subprocess.TimeoutExpired) as exc:
            return f"{runtime} does not answer: {exc}"
        if found.returncode:
            detail = (found.stderr.strip().splitlines() or ["no such image"])[-1]
            return f"{runtime} has no image {env['docker']} ({detail}); pull or build it first"
        return None


class Singularity:
    """`singularity: /path/img.sif` with `binds`, `nv`, `cleanenv`, `containall`, `pass`."""

    name = "singularity"
    layer = CONTAINER
    options = ("binds", "nv", "cleanenv", "containall", "pass")

    def check(self, env: Mapping[str, Any], fail: Fail) -> None:
        image = env["singularity"]
        if not isinstance(image, str) or not image:
            raise fail("singularity", f"expected the path of an image, got {image!r}",
                       "e.g. /work/me/img.sif")
        for key in ("nv", "cleanenv", "containall"):
            _flag(env, key, fail)
        for key in ("binds", "pass"):
            _strings(env, key, fail)

    def wrap(self, command: str, env: Mapping[str, Any], run: RunContext, inner: Wrapper | None) -> str:
        words = [SINGULARITY, "exec"]
        words += [f"--{flag}" for flag in ("nv", "cleanenv", "containall") if env.get(flag)]
        for bind in _mounts(env, run, inner, "binds"):
            words += ["-B", shlex.quote(bind)]
        words += ["--pwd", shlex.quote(run.cwd), shlex.quote(env["singularity"]), "sh", "-c",
                  shlex.quote(command)]
        line = " ".join(words)
        if not env.get("cleanenv") and not env.get("containall"):
            return line  # the host's environment crosses as it is
        # a clean environment still gets the run's variables, by name, the way both tools take them
        names = ["CUDA_VISIBLE_DEVICES", *RUN_VARIABLES, *run.variables, *SECRETS, *env.get("pass", [])]
        exports = " ".join(f"APPTAINERENV_{n}=\"${{{n}-}}\" SINGULARITYENV_{n}=\"${{{n}-}}\"" for n in names)
        return f"export {exports}; {line}"

    def mounts(self, env: Mapping[str, Any]) -> list[tuple[str, bool]]:
        return []

    def stop(self, env: Mapping[str, Any], run: RunContext) -> str | None:
        return None  # singularity exec runs in the step's process group: the signal reaches it

    def problem(self, env: Mapping[str, Any]) -> str | None:
        if not (shutil.which("apptainer") or shutil.which("singularity")):
            return "neither apptainer nor singularity is installed here"
        if not os.path.exists(env["singularity"]):
            return f"image {env['singularity']} does not exist"
        return None


@hookimpl(trylast=True)
def expdeploy_register_environments(register: Any) -> None:
    for wrapper in (Docker(), Singularity()):
        register(wrapper)
