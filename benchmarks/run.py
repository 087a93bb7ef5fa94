"""Benchmarks side by side with peer tools, measured in one run with hyperfine and
/usr/bin/time. Writes benchmarks/RESULTS.md (pass --no-write to only print).

Targets:
- plan: `expdeploy plan big.yml > /dev/null` on 100,000 runs under 3 s, peak memory under 300 MB;
  `expdeploy --help` under 0.25 s.
- dispatch: 500 runs of `true` on 2 slots, with ledger, run dirs and logs: at most half of
  GNU parallel's wall time and at most 3x `xargs -P2`.
- idle gaps: 20 runs of `sleep 0.5` on 2 slots within 5.3 s (ideal 5.0 s).
- status: `expdeploy status` on a 10,000-run experiment under 0.5 s.
- slurm: submitting a 1,000-run experiment to a real Slurm (tests/infra/slurm_up.sh) takes one
  `sbatch` per array chunk and under 2 s end to end; 1,000 single `sbatch` calls alongside.
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


def ensure_tool(name: str, package: str) -> str:
    found = shutil.which(name)
    if not found and os.geteuid() == 0 and shutil.which("apt-get"):
        print(f"installing {package} (Debian package)...", file=sys.stderr)
        env = {**os.environ, "DEBIAN_FRONTEND": "noninteractive"}
        subprocess.run(["apt-get", "install", "-y", "-qq", package], check=True, env=env,
                       stdout=subprocess.DEVNULL)
        found = shutil.which(name)
    if not found:
        sys.exit(f"{name} is needed: apt-get install {package}")
    return found


def timed(hyperfine: str, commands: dict[str, str], runs: int, prepare: str | None = None,
          warmup: int = 1, env: dict[str, str] | None = None) -> dict[str, tuple[float, float]]:
    """Mean and standard deviation in seconds of each shell command, measured in one hyperfine run."""
    with tempfile.NamedTemporaryFile(suffix=".json") as out:
        args = [hyperfine, "--warmup", str(warmup), "--runs", str(runs), "--export-json", out.name,
                "--style", "basic", "--shell", "sh"]
        if prepare:
            args += ["--prepare", prepare]
        for name, command in commands.items():
            args += ["--command-name", name, command]
        subprocess.run(args, check=True, cwd=HERE.parent, stdout=sys.stderr, env=env)
        results = json.loads(Path(out.name).read_text())["results"]
    return {r["command"]: (r["mean"], r["stddev"]) for r in results}


def peak_rss_mb(command: str) -> float:
    done = subprocess.run(["/usr/bin/time", "-f", "%M", "sh", "-c", command], cwd=HERE.parent,
                          capture_output=True, text=True, check=True)
    return int(done.stderr.strip().splitlines()[-1]) / 1024


def grid_spec(path: Path, name: str, command: str, count: int) -> Path:
    values = ", ".join(str(i) for i in range(count))
    path.write_text(f"name: {name}\ncommand: {json.dumps(command)}\ngrid:\n  i: [{values}]\n")
    return path


def row(name: str, times: dict[str, tuple[float, float]], *cells: str) -> str:
    mean, std = times[name]
    return "| " + " | ".join([name, f"{mean:.3f} ± {std:.3f}", *cells]) + " |"


def bench_plan(hyperfine: str) -> list[str]:
    plan = f"{EXPDEPLOY} plan benchmarks/big.yml > /dev/null"
    count = json.loads(subprocess.run(
        [EXPDEPLOY, "plan", "benchmarks/big.yml", "--format", "json", "--show", "0"],
        cwd=HERE.parent, capture_output=True, text=True, check=True).stdout)["count"]
    floor = f"{sys.executable} -c \"{BASELINE}\" > /dev/null"
    times = timed(hyperfine, {"expdeploy plan big.yml": plan,
                              "python itertools only (floor)": floor}, runs=5)
    help_times = timed(hyperfine, {
        "expdeploy --help": f"{EXPDEPLOY} --help > /dev/null",
        "wandb --help (peer CLI)": f"{WANDB} --help > /dev/null",
        "python -c pass (floor)": f"{sys.executable} -c pass",
    }, runs=20)
    return [
        f"## `expdeploy plan` on a {count:,}-run grid (default output to /dev/null)",
        "",
        "| command | wall s | peak MB | target |",
        "|---|---|---|---|",
        row("expdeploy plan big.yml", times, f"{peak_rss_mb(plan):.0f}", "< 3 s, < 300 MB"),
        row("python itertools only (floor)", times, f"{peak_rss_mb(floor):.0f}", ""),
        "",
        "The floor builds the same number of parameter dicts and nothing else; expdeploy also",
        "validates, de-duplicates, hashes run ids, finds varying parameters, names every run and",
        "checks every template's placeholders.",
        "",
        "## Start-up: `--help`",
        "",
        "| command | wall s | target |",
        "|---|---|---|",
        row("expdeploy --help", help_times, "< 0.25 s"),
        row("wandb --help (peer CLI)", help_times, ""),
        row("python -c pass (floor)", help_times, ""),
        "",
    ]


def bench_dispatch(hyperfine: str, work: Path) -> list[str]:
    """500 runs of `true` on 2 slots (ledger, run dirs, logs) against GNU parallel and xargs."""
    parallel = ensure_tool("parallel", "parallel")
    spec = grid_spec(work / "dispatch.yml", "dispatch", "true", 500)
    gaps = grid_spec(work / "gaps.yml", "gaps", "sleep 0.5", 20)
    # every iteration writes a new experiment directory: deleting the last one first would
    # time the file system's cleanup of 500 directories instead of expdeploy
    counter = work / "counter"
    counter.write_text("0")
    fresh = f"echo $(( $(cat {counter}) + 1 )) > {counter}"
    disk = f"{work}/out/$(cat {counter})"
    shm = Path("/dev/shm") / f"expdeploy-bench-{os.getpid()}"
    commands = {
        "expdeploy run, on disk": f"{EXPDEPLOY} run {spec} -j 2 -o {disk} > /dev/null",
        "expdeploy run, on tmpfs": f"{EXPDEPLOY} run {spec} -j 2 -o {shm}/$(cat {counter}) > /dev/null",
        "GNU parallel -j2": f"seq 500 | {parallel} -j2 true {{}}",
        "xargs -P2": "seq 500 | xargs -P2 -n1 true",
    }
    try:
        times = timed(hyperfine, commands, runs=5, prepare=fresh)
        gap_times = timed(hyperfine, {
            "expdeploy run (20 x sleep 0.5, -j 2)": f"{EXPDEPLOY} run {gaps} -j 2 -o {disk} > /dev/null",
            "GNU parallel -j2 (20 x sleep 0.5)": f"seq 20 | {parallel} -j2 'sleep 0.5 # {{}}'",
            "xargs -P2 (20 x sleep 0.5)": "seq 20 | xargs -P2 -I{} sleep 0.5",
        }, runs=3, prepare=fresh, warmup=0)
    finally:
        shutil.rmtree(shm, ignore_errors=True)
        shutil.rmtree(work / "out", ignore_errors=True)
    par, xargs = times["GNU parallel -j2"][0], times["xargs -P2"][0]

    def ratios(name: str) -> str:
        ours = times[name][0]
        return f"{ours / par:.2f} x parallel, {ours / xargs:.2f} x xargs"

    return [
        "## Dispatch: 500 runs of `true` on 2 slots",
        "",
        "expdeploy writes the ledger and a directory per run (params.json, commands.sh, log,",
        "state.json, claim), once on this machine's disk (ext4 on a virtual disk, where creating a",
        "file costs 0.3-0.5 ms) and once on tmpfs; the peers write nothing.",
        "",
        "| command | wall s | expdeploy / peer | target |",
        "|---|---|---|---|",
        row("expdeploy run, on disk", times, ratios("expdeploy run, on disk"),
            "<= 0.5 x parallel, <= 3 x xargs"),
        row("expdeploy run, on tmpfs", times, ratios("expdeploy run, on tmpfs"), ""),
        row("GNU parallel -j2", times, "", ""),
        row("xargs -P2", times, "", ""),
        "",
        "## Idle gaps: 20 runs of `sleep 0.5` on 2 slots (ideal 5.0 s)",
        "",
        "| command | wall s | target |",
        "|---|---|---|",
        row("expdeploy run (20 x sleep 0.5, -j 2)", gap_times, "<= 5.3 s"),
        row("GNU parallel -j2 (20 x sleep 0.5)", gap_times, ""),
        row("xargs -P2 (20 x sleep 0.5)", gap_times, ""),
        "",
    ]


def bench_status(hyperfine: str, work: Path) -> list[str]:
    """`expdeploy status` on a 10,000-run experiment (10 failed runs to list)."""
    spec = grid_spec(work / "status.yml", "status", "exit $(( {i} % 1000 == 7 ))", 10_000)
    out = work / "status-out"
    if not (out / "status" / "ledger.sqlite").exists():
        subprocess.run([EXPDEPLOY, "run", str(spec), "-j", "2", "-o", str(out)],
                       stdout=subprocess.DEVNULL, check=False)
    times = timed(hyperfine, {
        "expdeploy status (10,000 runs)": f"{EXPDEPLOY} status -o {out} > /dev/null",
        "expdeploy status --format json": f"{EXPDEPLOY} status -o {out} --format json > /dev/null",
    }, runs=10)
    return [
        "## `expdeploy status` on a 10,000-run experiment",
        "",
        "| command | wall s | target |",
        "|---|---|---|",
        row("expdeploy status (10,000 runs)", times, "< 0.5 s"),
        row("expdeploy status --format json", times, ""),
        "",
    ]


def bench_slurm(hyperfine: str, work: Path) -> list[str]:
    """1,000 runs submitted to a real single-node Slurm (held in a DOWN partition so nothing runs
    while timing), against 1,000 single `sbatch` calls; sbatch calls counted through a PATH shim."""
    base = work / "slurm"
    ports = {"SLURMCTLD_PORT": "6837", "SLURMD_PORT": "6838", "DBD_PORT": "6839"}  # beside a test cluster
    # MinJobAge 2 s: the jobs each iteration cancels are gone before the next one submits, so no
    # iteration times a controller burdened with the earlier ones
    infra = {**os.environ, "BASE": str(base), "MAX_ARRAY_SIZE": "1001", "CPUS": "2", "MINJOBAGE": "2",
             **ports}
    subprocess.run(["bash", "tests/infra/slurm_up.sh"], cwd=HERE.parent, env=infra, check=True,
                   stdout=subprocess.DEVNULL)
    shim = work / "shim"
    shim.mkdir(exist_ok=True)
    calls = work / "sbatch-calls"
    real = shutil.which("sbatch") or "/usr/bin/sbatch"
    (shim / "sbatch").write_text(f'#!/bin/sh\necho x >> {calls}\nexec {real} "$@"\n')
    (shim / "sbatch").chmod(0o755)
    env = {**os.environ, "SLURM_CONF": str(base / "etc" / "slurm.conf"),
           "PATH": f"{shim}:{os.environ['PATH']}"}
    spec = grid_spec(work / "submit.yml", "submit", "true", 1000)
    counter = work / "slurm-counter"
    counter.write_text("0")
    out = work / "slurm-out"
    # sync: the dirty pages of earlier runs (and sections) are not written back while timing
    clear = (f"scancel --user=$(id -un); while [ -n \"$(squeue -h -o %i)\" ]; do sleep 0.1; done; "
             f": > {calls}; echo $(( $(cat {counter}) + 1 )) > {counter}; sync")
    ours = "expdeploy run --backend slurm --detach (1,000 runs)"
    loop = "1,000 x sbatch --wrap true (shell loop)"
    try:
        subprocess.run(["scontrol", "update", "PartitionName=debug", "State=DOWN"], env=env, check=True)
        times = timed(hyperfine, {
            ours: f"{EXPDEPLOY} run {spec} --backend slurm --detach -o {out}/$(cat {counter}) > /dev/null",
            loop: "for i in $(seq 1000); do sbatch --parsable --wrap true > /dev/null; done",
        }, runs=3, prepare=clear, env=env)
        subprocess.run(["sh", "-c", clear], env=env, check=True)
        subprocess.run([EXPDEPLOY, "run", str(spec), "--backend", "slurm", "--detach",
                        "-o", str(out / "count")], env=env, check=True, stdout=subprocess.DEVNULL)
        sbatch_calls = len(calls.read_text().splitlines())
    finally:
        subprocess.run(["scancel", f"--user={os.environ.get('USER', 'root')}"], env=env, check=False)
        subprocess.run(["bash", "tests/infra/slurm_down.sh"], cwd=HERE.parent, env={**infra, "PURGE": "1"},
                       check=False, stdout=subprocess.DEVNULL)
        shutil.rmtree(out, ignore_errors=True)
    ratio = times[loop][0] / times[ours][0]
    return [
        "## Slurm: submitting a 1,000-run experiment",
        "",
        "A real single-node Slurm 22.05 (tests/infra/slurm_up.sh, MaxArraySize 1001) with its partition",
        "DOWN, so jobs queue and nothing runs while timing. End to end: spec, manifest, ledger, run",
        "directories, claims, scripts, submission and the first `squeue`.",
        "",
        "| command | wall s | sbatch calls | target |",
        "|---|---|---|---|",
        row(ours, times, str(sbatch_calls), "< 2 s, one sbatch per array chunk"),
        row(loop, times, "1000", ""),
        "",
        f"expdeploy submits {ratio:.0f}x faster than the loop of single `sbatch` calls.",
        "",
    ]


def main() -> None:
    hyperfine = ensure_tool("hyperfine", "hyperfine")
    work = HERE / ".work"
    work.mkdir(exist_ok=True)
    only = [a for a in sys.argv[1:] if not a.startswith("--")]
    sections = {"plan": lambda: bench_plan(hyperfine),
                "dispatch": lambda: bench_dispatch(hyperfine, work),
                "status": lambda: bench_status(hyperfine, work),
                "slurm": lambda: bench_slurm(hyperfine, work)}
    lines = [
        "# Benchmark results",
        "",
        f"Measured {date.today()} with `nox -s bench` (benchmarks/run.py): hyperfine for wall time "
        "(mean ± standard deviation), `/usr/bin/time -f %M` for peak memory. "
        f"Machine: {platform.machine()}, {os.cpu_count()} cores, Python {platform.python_version()}.",
        "",
    ]
    for name, section in sections.items():
        if not only or name in only:
            lines += section()
    text = "\n".join(lines)
    print(text)
    if "--no-write" not in sys.argv and not only:
        (HERE / "RESULTS.md").write_text(text)


if __name__ == "__main__":
    main()
