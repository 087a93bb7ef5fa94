"""Benchmarks for `expdeploy plan` and start-up, side by side with peers, measured with hyperfine
and /usr/bin/time. Writes benchmarks/RESULTS.md (pass --no-write to only print).

Targets (issue 2): `expdeploy plan big.yml > /dev/null` on 100,000 runs under 3 s with peak
memory under 300 MB; `expdeploy --help` under 0.25 s.
"""

from __future__ import annotations

import json
import os
import platform
import shutil
import subprocess
import sys
import tempfile
from datetime import date
from pathlib import Path

HERE = Path(__file__).resolve().parent
BIN = Path(sys.executable).parent
EXPDEPLOY = str(BIN / "expdeploy")
WANDB = str(BIN / "wandb")

# The same 10^5 grid as big.yml, expanded with nothing but itertools: the floor for Python.
BASELINE = (
    "import itertools; axes = [range(10)] * 5; "
    "runs = [dict(zip('abcde', c)) for c in itertools.product(*axes)]; print(len(runs))"
)


def ensure_hyperfine() -> str:
    found = shutil.which("hyperfine")
    if found:
        return found
    if os.geteuid() == 0 and shutil.which("apt-get"):
        print("installing hyperfine (Debian package)...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", "hyperfine"], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = shutil.which("hyperfine")
    if not found:
        sys.exit("hyperfine is needed: apt-get install hyperfine")
    return found


def timed(hyperfine: str, commands: dict[str, str], runs: int) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation in seconds of each shell command, measured in one hyperfine run."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        args = [hyperfine, "--warmup", "1", "--runs", str(runs), "--export-json", out.name,
                "--style", "basic", "--shell", "sh"]
        for name, command in commands.items():
            args += ["--command-name", name, command]
        subprocess.run(args, check=True, cwd=HERE.parent, stdout=sys.stderr)
        results = json.loads(Path(out.name).read_text())["results"]
    return {r["command"]: (r["mean"], r["stddev"]) for r in results}


def peak_rss_mb(command: str) -> float:
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", command], cwd=HERE.parent,
                          capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def main() -> None:
    hyperfine = ensure_hyperfine()
    plan = f"{EXPDEPLOY} plan benchmarks/big.yml > /dev/null"
    count = json.loads(subprocess.run(
        [EXPDEPLOY, "plan", "benchmarks/big.yml", "--format", "json", "--show", "0"],
        cwd=HERE.parent, capture_output=True, text=True, check=True).stdout)["count"]
    plan_times = timed(hyperfine, {
        "expdeploy plan big.yml": plan,
        "python itertools only (floor)": f"{sys.executable} -c \"{BASELINE}\" > /dev/null",
    }, runs=5)
    help_times = timed(hyperfine, {
        "expdeploy --help": f"{EXPDEPLOY} --help > /dev/null",
        "wandb --help (peer CLI)": f"{WANDB} --help > /dev/null",
        "python -c pass (floor)": f"{sys.executable} -c pass",
    }, runs=20)
    rss = peak_rss_mb(plan)
    rss_floor = peak_rss_mb(f"{sys.executable} -c \"{BASELINE}\" > /dev/null")

    def row(name: str, times: dict[str, tuple[float, float]], target: str = "", extra: str = "") -> str:
        mean, std = times[name]
        return f"| {name} | {mean:.3f} ± {std:.3f} | {extra} | {target} |"

    lines = [
        "# Benchmark results",
        "",
        f"Measured {date.today()} with `nox -s bench` (benchmarks/run.py): hyperfine for wall time "
        "(mean ± standard deviation), `/usr/bin/time -f %M` for peak memory. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
        f"## `expdeploy plan` on a {count:,}-run grid (default output to /dev/null)",
        "",
        "| command | wall s | peak MB | target |",
        "|---|---|---|---|",
        row("expdeploy plan big.yml", plan_times, "< 3 s, < 300 MB", f"{rss:.0f}"),
        row("python itertools only (floor)", plan_times, "", f"{rss_floor:.0f}"),
        "",
        "The floor builds the same number of parameter dicts and nothing else; expdeploy also",
        "validates, de-duplicates, hashes run ids, finds varying parameters, names every run and",
        "checks every template's placeholders.",
        "",
        "## Start-up: `--help`",
        "",
        "| command | wall s | | target |",
        "|---|---|---|---|",
        row("expdeploy --help", help_times, "< 0.25 s"),
        row("wandb --help (peer CLI)", help_times),
        row("python -c pass (floor)", help_times),
        "",
    ]
    text = "\n".join(lines)
    print(text)
    if "--no-write" not in sys.argv:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
