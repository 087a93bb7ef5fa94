"""`expdeploy env check`: run the environment's interpreter here, on each host of a target and, for
Slurm, on a compute node through srun; compare Python version, installed packages and GPUs."""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from expdeploy.remote import LocalShell, RemoteError

if TYPE_CHECKING:
    from expdeploy.remote import Shell
    from expdeploy.targets import Target

# Run by the environment's own interpreter (-I: no PYTHON* variables, no user site), standard library only.
PROBE = r"""
import hashlib, json, re, sys
try:
    from importlib import metadata
    found = set()
    for dist in metadata.distributions():
        name = dist.metadata["Name"]
        if name:
            found.add("%s==%s" % (re.sub(r"[-_.]+", "-", name).lower(), dist.version))
    packages = sorted(found)
except ImportError:
    packages = None
digest = None if packages is None else hashlib.sha256("\n".join(packages).encode()).hexdigest()
print("@@facts " + json.dumps({"python": sys.version.split()[0], "packages": packages, "sha256": digest}))
"""
SRUN_TIMEOUT = 300  # seconds for the compute node's answer, queueing included
SHOWN = 8  # package differences spelled out; the rest counted


@dataclass(frozen=True, slots=True)
class Facts:
    where: str  # "this machine", "h1", "h1 (srun)"
    python: str | None  # "3.11.7"; None when the interpreter did not answer
    packages: tuple[str, ...] | None  # name==version, sorted
    digest: str | None  # sha256 of the packages, one per line
    gpus: str  # nvidia-smi -L count, or "none"
    problem: str | None = None  # why python or packages are missing


@dataclass(frozen=True, slots=True)
class EnvCheck:
    target: str
    environment: str  # here
    remote_environment: str  # there (the same path, unless path_map moves it)
    here: Facts
    there: tuple[Facts, ...]

    def differences(self) -> dict[str, list[str]]:
        """Per place that differs from here: what, in words."""
        found = {f.where: compare(self.here, f) for f in self.there}
        return {where: diff for where, diff in found.items() if diff}

    @property
    def ok(self) -> bool:
        return self.here.problem is None and not self.differences()


def check_environment(target: Target) -> EnvCheck:
    """Probe the environment here and at every place the target runs; TargetUnreachable (exit 2)
    when a host cannot be reached, BadInput when there is no usable environment here."""
    from expdeploy.environments import target_environment

    env = target_environment(target)
    remote_python = target.remote_path(env.prefix) + "/bin/python"
    here = probe(LocalShell(), "this machine", env.python)
    there: list[Facts] = []
    for host in target.hosts:
        shell = _connect(target, host)
        try:
            there.append(_probe_host(shell, host, remote_python))
            if target.backend == "slurm":
                there.append(probe_srun(shell, f"{host} (srun)", remote_python, target))
        finally:
            shell.close()
    if not target.hosts and target.backend == "slurm":
        there.append(probe_srun(LocalShell(target.env), "compute node (srun)", env.python, target))
    return EnvCheck(target.name, env.prefix, target.remote_path(env.prefix), here, tuple(there))


def _connect(target: Target, host: str) -> Shell:
    from expdeploy.remote import SshShell
    from expdeploy.sync import TargetUnreachable

    try:
        return SshShell(target, host)  # ssh -G; the first command connects
    except RemoteError as exc:
        raise TargetUnreachable(exc.message, hint=exc.hint) from None


def _probe_host(shell: Shell, where: str, python: str) -> Facts:
    from expdeploy.sync import TargetUnreachable

    try:
        return probe(shell, where, python)
    except RemoteError as exc:
        raise TargetUnreachable(exc.message, hint=exc.hint) from None


def probe_command(python: str) -> str:
    """sh: the probe by `python` (or `@@missing`), then `@@gpus N` from nvidia-smi -L."""
    py = shlex.quote(python)
    return (f"if [ -x {py} ]; then {py} -I -c {shlex.quote(PROBE)} || echo @@failed; "
            "else echo @@missing; fi; "
            "echo \"@@gpus $(nvidia-smi -L 2>/dev/null | grep -c '^GPU ')\"")


def srun_command(target: Target, command: str) -> str:
    """One task on one compute node, with the target's partition, account, qos and constraint."""
    settings = target.slurm
    options = ["--nodes=1", "--ntasks=1", "--time=5"]
    for option, value in (("partition", settings.partition), ("account", settings.account),
                          ("qos", settings.qos), ("constraint", settings.constraint)):
        if value:
            options.append(f"--{option}={value}")
    return shlex.join(["srun", *options, "sh", "-c", command])


def probe(shell: Shell, where: str, python: str, *, timeout: float = 120) -> Facts:
    done = shell.run(probe_command(python), timeout=timeout)
    return parse_probe(where, python, done.stdout, done.stderr)


def probe_srun(shell: Shell, where: str, python: str, target: Target) -> Facts:
    try:
        done = shell.run(srun_command(target, probe_command(python)), timeout=SRUN_TIMEOUT)
    except RemoteError as exc:
        return Facts(where, None, None, None, "none", problem=f"srun gave no answer: {exc.message}")
    if "@@gpus" not in done.stdout:
        last = (done.stderr.strip().splitlines() or [f"exit status {done.code}"])[-1]
        return Facts(where, None, None, None, "none", problem=f"srun failed: {last}")
    return parse_probe(where, python, done.stdout, done.stderr)


def parse_probe(where: str, python: str, stdout: str, stderr: str) -> Facts:
    gpus = re.search(r"^@@gpus (\d+)", stdout, re.M)
    count = gpus.group(1) if gpus and gpus.group(1) != "0" else "none"
    facts = re.search(r"^@@facts (.*)$", stdout, re.M)
    if facts:
        data = json.loads(facts.group(1))
        packages = data.get("packages")
        return Facts(where, data.get("python"), None if packages is None else tuple(packages),
                     data.get("sha256"), count)
    if re.search(r"^@@missing", stdout, re.M):
        problem = f"{python} is not there (sync the environment: expdeploy env sync)"
    else:
        last = (stderr.strip().splitlines() or ["no output"])[-1]
        problem = f"{python} failed: {last}"
    return Facts(where, None, None, None, count, problem=problem)


def compare(here: Facts, there: Facts) -> list[str]:
    """What differs at `there`, in words; empty when python, packages and GPUs all agree."""
    if there.problem:
        return [there.problem]
    found = []
    if here.python != there.python:
        found.append(f"python {there.python} there, {here.python} here")
    if here.digest != there.digest:
        found.append("packages differ: " + package_differences(here.packages or (), there.packages or ()))
    if here.gpus != there.gpus:
        found.append(f"gpus {there.gpus} there, {here.gpus} here")
    return found


def package_differences(here: Sequence[str], there: Sequence[str]) -> str:
    """`numpy 1.26.4 here, 2.0.0 there; fake==1.0 only there` (from name==version lists)."""
    mine = dict(p.split("==", 1) for p in here)
    theirs = dict(p.split("==", 1) for p in there)
    found = [f"{n} {mine[n]} here, {theirs[n]} there"
             for n in sorted(mine) if n in theirs and mine[n] != theirs[n]]
    found += [f"{n}=={theirs[n]} only there" for n in sorted(theirs) if n not in mine]
    found += [f"{n}=={mine[n]} only here" for n in sorted(mine) if n not in theirs]
    if not found:
        return "the same names and versions, hashed differently"
    more = f"; and {len(found) - SHOWN} more" if len(found) > SHOWN else ""
    return "; ".join(found[:SHOWN]) + more


def describe(facts: Facts) -> str:
    if facts.problem and facts.python is None:
        return f"{facts.problem}; gpus {facts.gpus}"
    count = "?" if facts.packages is None else str(len(facts.packages))
    digest = (facts.digest or "")[:12]
    return f"python {facts.python}  packages {count} (sha256 {digest})  gpus {facts.gpus}"
