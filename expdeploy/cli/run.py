"""`expdeploy run`: expand an experiment and execute every run on a backend (local by default)."""

from __future__ import annotations

import shlex
import sys
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Annotated, Any

import typer

from expdeploy.cli.common import (
    CommandOpt,
    NameOpt,
    OutputOpt,
    OverridesArg,
    ResourcesOpt,
    RunCapOpt,
    SeedOpt,
    SpecArg,
    SpecFormatOpt,
    TitleOpt,
    load_from_cli,
    load_options,
)
from expdeploy.errors import BadInput, Location

if TYPE_CHECKING:
    from expdeploy.backend import Backend
    from expdeploy.ledger import Ledger
    from expdeploy.provenance import CodeState, Launch
    from expdeploy.spec.model import Recipe, Resources
    from expdeploy.targets import Target
    from expdeploy.wrapping import EnvSpec

BackendOpt = Annotated[str | None, typer.Option(
    "--backend", "-b", help="Where runs execute: local (default), slurm, ... (see `expdeploy plugins`).",
    show_default=False)]
TargetOpt = Annotated[str | None, typer.Option(
    "--target", "-t", help="A named target from expdeploy.toml (see `expdeploy targets list`); "
    "brings its backend.", show_default=False)]
ThrottleOpt = Annotated[int | None, typer.Option(
    "--max-concurrent", help="Slurm: at most N runs at once (the array's %N throttle).", show_default=False)]
AgentsOpt = Annotated[int | None, typer.Option(
    "--agents", help="K agents that each claim and run pending runs until none remain: Slurm, an "
    "array of K tasks (many short runs under a job-count limit); SSH, K agents over the hosts' slots "
    "(the experiment directory on a shared file system).", show_default=False)]
SignalOpt = Annotated[str | None, typer.Option(
    "--signal", help="Slurm: warning signal before the time limit, e.g. USR1@60; the run is "
    "requeued, not failed.", show_default=False)]
HostTimeoutOpt = Annotated[float, typer.Option(
    "--host-timeout", help="SSH: seconds a host may stay unreachable before its runs are lost and "
    "start again on the other hosts.")]
JobsOpt = Annotated[int | None, typer.Option("--jobs", "-j", help="CPU slots (default: number of cores).")]
GpusOpt = Annotated[str | None, typer.Option("--gpus", help="Only these GPUs, e.g. 0,2,3.")]
PackOpt = Annotated[int, typer.Option("--runs-per-gpu", help="Pack this many runs on one GPU.")]
FreeMemOpt = Annotated[int, typer.Option("--gpu-free-memory", help="A GPU is free below this many MiB used.")]
FreeUtilOpt = Annotated[int, typer.Option("--gpu-free-util", help="A GPU is free below this % utilisation.")]
ForceOpt = Annotated[bool, typer.Option("--force", help="Rerun every run, also succeeded ones.")]
RetryOpt = Annotated[bool, typer.Option("--retry-failed", help="Rerun runs that failed before.")]
MaxRetriesOpt = Annotated[int, typer.Option("--max-retries", help="Retry a failing run up to N times now.")]
GraceOpt = Annotated[float, typer.Option("--grace", help="Seconds between SIGTERM and SIGKILL on Ctrl-C.")]
TagOpt = Annotated[list[str] | None, typer.Option("--tag", help="Only runs with this tag (repeatable).")]
SampleOpt = Annotated[int | None, typer.Option("--sample", help="A random subset of N runs (--seed).")]
FirstOpt = Annotated[bool, typer.Option("--first",
                                       help="One run, output to the terminal: debug the command.")]
DryRunOpt = Annotated[bool, typer.Option("--dry-run", help="Show what would start; start nothing.")]
StepsOpt = Annotated[str | None, typer.Option("--steps", help="Only these steps, e.g. train,test "
                                                             "(with --force to redo succeeded runs).")]
OnOpt = Annotated[str | None, typer.Option(
    "--on", help="--backend wandb: the backend whose slots its agents take (local, slurm, ssh; default "
    "the target's, else local).", show_default=False)]
SweepOpt = Annotated[str | None, typer.Option(
    "--sweep", help="--backend wandb: attach agents to sweeps that exist (ENTITY/PROJECT/ID, one per "
    "subtest, comma-separated) instead of creating them.", show_default=False)]
AgentRunsOpt = Annotated[int | None, typer.Option(
    "--runs-per-agent", help="--backend wandb: each agent stops after N runs (wandb agent --count).",
    show_default=False)]
WandbModeOpt = Annotated[str, typer.Option(
    "--wandb-mode", help="W&B sweep files: WANDB_MODE of the runs (offline, online, disabled); offline "
    "runs land in each run directory, for `expdeploy wandb sync`.")]
NoSyncOpt = Annotated[bool, typer.Option(
    "--no-sync", help="With --target: do not send the code and environment first (`expdeploy env sync`).")]
SnapshotOpt = Annotated[bool, typer.Option(
    "--snapshot", help="Copy the code into <exp>/snapshots/ now and run from the copy: edits made while "
    "runs wait in a queue do not reach them.")]
RequireCleanOpt = Annotated[bool, typer.Option(
    "--require-clean", help="Refuse to start from a git tree with uncommitted changes or untracked files "
    "(without it they are recorded, with a warning).")]
OnlyOpt = Annotated[list[str] | None, typer.Option(
    "--run", help="Only this run, by name as `expdeploy status` shows it (repeatable).", show_default=False)]
DetachOpt = Annotated[bool, typer.Option("--detach", help="Keep running after you log out; output "
                                                          "goes to <exp>/controller.log. Slurm: exit "
                                                          "once every run is submitted.")]


def run_command(
    spec: SpecArg,
    overrides: OverridesArg = None,
    output: OutputOpt = Path("experiments"),
    backend: BackendOpt = None,
    target: TargetOpt = None,
    max_concurrent: ThrottleOpt = None,
    signal: SignalOpt = None,
    agents: AgentsOpt = None,
    host_timeout: HostTimeoutOpt = 60.0,
    jobs: JobsOpt = None,
    gpus: GpusOpt = None,
    runs_per_gpu: PackOpt = 1,
    gpu_free_memory: FreeMemOpt = 1024,
    gpu_free_util: FreeUtilOpt = 10,
    force: ForceOpt = False,
    retry_failed: RetryOpt = False,
    max_retries: MaxRetriesOpt = 0,
    grace: GraceOpt = 10.0,
    tag: TagOpt = None,
    sample: SampleOpt = None,
    first: FirstOpt = False,
    dry_run: DryRunOpt = False,
    steps: StepsOpt = None,
    detach: DetachOpt = False,
    no_sync: NoSyncOpt = False,
    snapshot: SnapshotOpt = False,
    require_clean: RequireCleanOpt = False,
    only: OnlyOpt = None,
    wandb_mode: WandbModeOpt = "offline",
    on: OnOpt = None,
    sweep: SweepOpt = None,
    runs_per_agent: AgentRunsOpt = None,
    spec_format: SpecFormatOpt = None,
    command: CommandOpt = None,
    title: TitleOpt = None,
    name: NameOpt = None,
    seed: SeedOpt = 0,
    run_cap: RunCapOpt = None,
    resources: ResourcesOpt = None,
) -> None:
    """Run every run of SPEC; runs that already succeeded are skipped, so re-running resumes.

    Runs execute in the current directory (or its --snapshot copy). The code's git commit, its
    uncommitted diff and untracked files, the spec and the Python packages are recorded in
    <exp>/provenance/ (see `expdeploy restore`). Each run gets CUDA_VISIBLE_DEVICES, EXPDEPLOY_RUN_ID and
    EXPDEPLOY_RUN_DIR; its logs, params.json and state.json live in <output>/<name>/runs/<run>/.
    Exit status: 0 all succeeded, 1 a run failed, 2 bad input, 130 interrupted.

    Examples:

      expdeploy run examples/quickstart.yml

      expdeploy run grid.yml lr=0.1,0.01 --gpus 0,1 --runs-per-gpu 2

      expdeploy run grid.yml --retry-failed

      expdeploy run grid.yml --backend slurm --max-concurrent 8 --detach

      expdeploy run grid.yml --target atlas      # a Slurm login node over SSH

      expdeploy run grid.yml --target lab        # the GPUs of a target's SSH hosts

      expdeploy run sweep.yaml --backend wandb --on slurm --target atlas --agents 8

      expdeploy run -- python3 train.py -m lr=0.1,0.01 'seed=range(3)'   # a Hydra multirun line
    """
    from expdeploy.backend import BackendOptions, Task
    from expdeploy.controller import Controller, RunSettings, Selection, select_runs
    from expdeploy.expdir import RunPreparer, plan_record, write_manifest
    from expdeploy.ledger import Ledger
    from expdeploy.placement import backend_named, choose, gather, make_backend
    from expdeploy.plan import make_plan
    from expdeploy.progress import Progress
    from expdeploy.wandb_runs import MODES, run_variables
    from expdeploy.worker import CANCEL_MARK, owner

    gpu_ids = _gpu_list(gpus)
    if jobs is not None and jobs < 1:
        raise BadInput("--jobs must be at least 1", key="--jobs")
    if max_concurrent is not None and max_concurrent < 1:
        raise BadInput("--max-concurrent must be at least 1", key="--max-concurrent")
    chosen_backend = _backend_class(backend_named(backend, target, Path.cwd()))
    options_in = load_options(command, title, name, seed, run_cap, sample, chosen_backend.drives_search)
    loaded, parsed = load_from_cli(spec, overrides, options_in, spec_format, resources)
    if chosen_backend.drives_search and (parsed or command):
        raise BadInput(f"--backend {chosen_backend.name} gives the sweep file to its server as it is: "
                       f"{'overrides' if parsed else '--command'} would not reach the runs", key="--backend",
                       hint="edit the sweep file, or run it on another backend (expdeploy expands it then)")
    line = loaded.extra.get("command_line") if loaded.format == "hydra" else None  # SPEC is no file
    plan = make_plan(loaded, parsed, output)
    cwd = Path.cwd()
    placement = choose(backend, target, cwd, plan.exp_dir)
    envs = _target_envs(placement.target, plan.spec.recipes)
    if wandb_mode not in MODES:
        raise BadInput(f"--wandb-mode {wandb_mode!r}", key="--wandb-mode", hint=f"one of {', '.join(MODES)}")
    spec_meta = (loaded.format, plan.spec.extra, plan.spec.name)
    for where, note in plan.spec.notes:
        sys.stderr.write(f"warning: {where}: {note}\n")

    def make_records(run_cwd: str, launch: str | None = None) -> list[dict[str, Any]]:
        return [plan_record(run, Path(placement.exp_dir), plan.launch_time, Path(run_cwd),
                            envs.get(id(run.recipe)),
                            run_variables(*spec_meta, run.name, run.tags,
                                          f"{placement.exp_dir}/runs/{run.name}", wandb_mode, run.run_id),
                            launch)
                for run in plan.expansion.runs]

    records = make_records(placement.cwd)
    settings = RunSettings(force=force or first, retry_failed=retry_failed, max_retries=max_retries,
                           grace_seconds=grace, tags=tuple(tag or ()), sample=sample, seed=seed,
                           first=first, detach=detach, only=tuple(only or ()))
    chosen_steps = _steps(steps, plan.step_names)
    options = BackendOptions(exp_dir=plan.exp_dir, jobs=1 if first else jobs, gpus=gpu_ids,
                             runs_per_gpu=runs_per_gpu, gpu_free_memory_mib=gpu_free_memory,
                             gpu_free_util_percent=gpu_free_util,
                             workers=_resources(plan.spec.recipes).workers if gpus is None else (),
                             max_concurrent=max_concurrent, max_retries=max_retries,
                             requeue_signal=_signal(signal), host_timeout=host_timeout, on=on,
                             spec_path=None if line else spec, sweep=sweep, agent_runs=runs_per_agent,
                             agents=agents, run_cap=run_cap,
                             resources=_resources(plan.spec.recipes).as_dict())
    backend_class = _backend_class(placement.backend)
    queues = backend_class.queues
    if agents is None and backend_class.agents_only:
        agents = 0  # one agent per slot
    _check_agents(agents, backend_class, tag=bool(tag), sample=sample is not None,
                  rerun=force or retry_failed or first or bool(chosen_steps))
    if queues and (chosen_steps or first):
        raise BadInput(f"--{'steps' if chosen_steps else 'first'} is not available with "
                       f"--backend {placement.backend}", key="--steps" if chosen_steps else "--first",
                       hint="run it on the local pool, or without that option")
    if tag and not any(set(tag) & set(r["tags"]) for r in records):
        raise BadInput(f"no run has tag {', '.join(tag)}", key="--tag",
                       hint=f"tags: {', '.join(sorted(plan.tag_counts)) or 'none'}")
    _check_only(only, records)
    run_envs = [envs.get(id(r)) or r.env for r in plan.spec.recipes]
    if not placement.remote:
        _check_environments(run_envs)
        _project_venv_first(cwd)
    tree, reused = _code(cwd, plan.exp_dir, require_clean)
    synced = _sync_first(placement.target, cwd, dry_run) if placement.remote and not no_sync else None
    if dry_run:
        states = _known_states(plan.exp_dir)
    else:
        from expdeploy.provenance import environment_info, log_launch, record_launch

        if reused is not None:  # from one of its snapshots: the code is that launch's
            log_launch(plan.exp_dir, reused.id, snapshot=True)
        launch = reused or record_launch(plan.exp_dir, cwd, tree, spec, overrides or [],
                                         environment_info(run_envs, here=not placement.remote), snapshot,
                                         {"spec_format": spec_format, "command": command, "title": title,
                                          "name": name, "seed": seed, "wandb_mode": wandb_mode,
                                          "run_cap": run_cap, "sample": sample, "resources": resources},
                                         command_line=line)
        run_cwd = placement.cwd
        if launch.snapshot is not None and reused is None:  # backends send the exp dir, snapshots too
            run_cwd = str(Path(placement.exp_dir) / launch.snapshot.relative_to(plan.exp_dir))
        records = [r for r in make_records(run_cwd, launch.id) if not only or r["name"] in only]
        # plans of runs already known change only for the runs this launch starts (below): a run
        # queued by an earlier launch keeps the code it was queued with
        write_manifest(plan.exp_dir, records, replace=False)
        ledger = Ledger(plan.exp_dir)
        ledger.add_runs(records)
        if only and ledger.meta().get("backend"):  # one run again: the experiment stays where it is
            ledger.set_meta({"controller": owner()})
        else:
            ledger.set_meta({"cwd": str(cwd), "format": loaded.format,
                             "spec": shlex.join(line) if line else str(spec.absolute()),
                             "overrides": overrides or [], "controller": owner(), **placement.meta(),
                             **({"metric": dict(plan.spec.metric)} if plan.spec.metric else {}),
                             **({"synced_commit": synced} if synced else {})})
        (plan.exp_dir / CANCEL_MARK).unlink(missing_ok=True)
        for note in gather(placement, plan.exp_dir):
            sys.stdout.write(f"note: {note}\n")
        ledger.reconcile()
        states = {row.run_id: row.state for row in ledger.rows()}
    selection = select_runs(plan.exp_dir, states, records, settings)
    if not dry_run:
        if settings.force:  # a forced run starts over, where a retry may resume (worker.Execution)
            selection.start[:] = [{**r, "restart": True} for r in selection.start]
        write_manifest(plan.exp_dir, [dict(r) for r in selection.start])
    skipped = ", ".join(f"{n} {why}" for why, n in selection.skipped.items())
    out = sys.stdout
    if plan.spec.chosen_elsewhere:
        out.write(f"{plan.spec.name}: {plan.spec.chosen_elsewhere}  [{plan.exp_dir}]\n")
    else:
        out.write(f"{plan.spec.name}: {len(selection.start)} of {len(records)} runs to start"
                  + (f" ({skipped})" if skipped else "") + f"  [{plan.exp_dir}]\n")
    if dry_run:
        if queues or backend_class.agents_only:
            placed = make_backend(placement, options)
            out.write(placed.preview([Task(r["run_id"], selection.attempts[r["run_id"]], r)
                                      for r in selection.start]))
            for note in placed.drain_notes():
                out.write(f"note: {note}\n")
            return
        for record in selection.start[:20]:
            out.write(f"  {record['name']}\n")
        return
    placed = make_backend(placement, options)
    out.write(placed.describe() + "\n")
    for note in placed.notes_for(selection.start):
        out.write(f"note: {note}\n")
    if agents is not None:
        _start_agents(placed, agents, selection.start, plan.exp_dir, ledger, backend_class.agents_only)
    if detach and not queues:
        ledger.close()
        log = plan.exp_dir / "controller.log"
        out.write(f"detaching: progress goes to {log}; `expdeploy status` follows the runs\n")
        daemon = _daemonize(log)
        if daemon is not None:
            out.write(f"controller pid {daemon}\n")
            raise typer.Exit(0)
        ledger = Ledger(plan.exp_dir)
        ledger.set_meta({"controller": owner()})
        out = sys.stdout
    if first and selection.start:
        for step, text in selection.start[0]["steps"]:
            out.write(f"[{step}] {text}\n")
        out.flush()
    progress = Progress(plan.exp_dir, len(selection.start), placed.capacity() or 1, stream=out,
                        live=False if first or detach else None)
    preparer = RunPreparer(plan.exp_dir, [] if agents is not None else selection.start, selection.attempts,
                           chosen_steps, queued=placement.backend if queues else None)
    controller = Controller(plan.exp_dir, ledger, placed, progress, settings,
                            steps=chosen_steps, claim=preparer.claim)
    code = controller.run(Selection() if agents is not None else selection)
    preparer.release_unstarted(controller.started)
    if queues and placed.active():
        out.write(f"{placed.active()} run(s) queued or running in {placement.backend}: "
                  f"`expdeploy status {plan.exp_dir}` follows them\n")
    else:
        out.write(progress.summary() + "\n")
    ledger.close()
    raise typer.Exit(code)


def _target_envs(target: Target | None, recipes: Sequence[Recipe]) -> dict[int, EnvSpec]:
    """Per recipe, its environment with the target's `wrap` layers in place of the spec's."""
    if target is None or target.wrap is None:
        return {}
    from expdeploy.wrapping import with_target

    where = target.wrap_where or target.where

    def fail(key: str, message: str, hint: str | None) -> Exception:
        return BadInput(message, where=where, key=f"targets.{target.name}.wrap" + (f".{key}" if key else ""),
                        hint=hint)

    return {id(r): with_target(r.env, target.wrap, where or Location("targets"), fail) for r in recipes}


def _resources(recipes: Sequence[Recipe]) -> Resources:
    """The first recipe's resources: mlrunner's `resource` workers, and what agents whose runs a
    service chooses ask for (a spec always has a recipe; a plugin's might not)."""
    from expdeploy.spec.model import Resources

    return recipes[0].resources if recipes else Resources()


def _check_only(only: list[str] | None, records: Sequence[Mapping[str, Any]]) -> None:
    names = {r["name"] for r in records}
    unknown = [n for n in only or () if n not in names]
    if unknown:
        shown = ", ".join(sorted(names)[:3]) + (" ..." if len(names) > 3 else "")
        raise BadInput(f"no run named {unknown[0]!r} in this experiment", key="--run", hint=f"runs: {shown}")


def _code(cwd: Path, exp_dir: Path, require_clean: bool) -> tuple[CodeState, Launch | None]:
    """The code the runs will see, checked (--require-clean) and warned about; when `cwd` is one
    of the experiment's snapshots (`rerun`), the launch that made it."""
    from expdeploy import provenance

    reused = provenance.snapshot_launch(exp_dir, cwd)
    code = reused.code if reused else provenance.code_state(cwd, exclude=[exp_dir.parent])
    if require_clean:
        provenance.check_clean(code)
    note = None if reused else provenance.warning(code, exp_dir)
    if note:
        sys.stderr.write(f"warning: {note}\n")
    return code, reused


def _project_venv_first(cwd: Path) -> None:
    """Runs here see the project's venv that expdeploy runs from first on PATH (see
    environments.project_venv_bin), as if it were activated: `python` is its Python."""
    import os

    from expdeploy.environments import project_venv_bin

    found = project_venv_bin(cwd, sys.prefix, sys.base_prefix, os.environ.get("PATH", ""))
    if found:
        os.environ["PATH"] = found + os.pathsep + os.environ.get("PATH", "")


def _check_environments(envs: Sequence[EnvSpec | None]) -> None:
    """A missing runtime, image or environment stops `run` here, before anything starts."""
    from expdeploy.wrapping import problems

    for env in envs:
        found = problems(env) if env is not None else []
        if found:
            raise BadInput(found[0], where=env.where if env else None, key="env",
                           hint="install or build what is missing, or fix the path in `env:`")


def _sync_first(target: Target | None, cwd: Path, dry_run: bool) -> str | None:
    """`expdeploy env sync TARGET` before the runs go there; the commit of the code sent."""
    from expdeploy.cli.common import OutputFormat
    from expdeploy.cli.env import SyncProgressView, summary_line
    from expdeploy.sync import sync_target

    assert target is not None
    with SyncProgressView(OutputFormat.table) as progress:
        report = sync_target(target, cwd, dry_run=dry_run, progress=progress)
    sys.stdout.write(summary_line(report) + "\n")
    return report.commit


def _check_agents(agents: int | None, backend: type[Backend], *, tag: bool, sample: bool,
                  rerun: bool) -> None:
    if agents is None:
        return
    problem = None
    if agents < 1 and not (agents == 0 and backend.agents_only):
        problem = "--agents must be at least 1"
    elif not (backend.runs_agents or backend.agents_only):
        problem = f"--agents places agents through a scheduler or on SSH hosts, not --backend {backend.name}"
    elif tag or sample or rerun:
        problem = "agents run every pending run: --agents goes without --tag, --sample, --force, " \
                  "--retry-failed, --first and --steps"
    if problem:
        raise BadInput(problem, key="--agents",
                       hint="on this machine, `expdeploy agent EXP_DIR` processes do the same")


def _start_agents(placed: Backend, count: int, plans: Sequence[Mapping[str, Any]], exp_dir: Path,
                  ledger: Ledger, elsewhere: bool) -> None:
    """The run directories (without claims: agents claim), then the agents themselves; agents
    whose runs come from elsewhere (W&B) need no run directories here."""
    from expdeploy.expdir import write_commands, write_run_dir

    for record in plans if not elsewhere else ():
        write_run_dir(exp_dir, record)
        write_commands(exp_dir, record)
    jobs = placed.submit_agents(count, plans)
    for note in placed.drain_notes():  # what was started, and where: before following begins
        sys.stdout.write(f"{note}\n")
    ledger.set_meta({"agent_arrays": [*(ledger.meta().get("agent_arrays") or []), *jobs]})


def _backend_class(name: str) -> type[Backend]:
    from expdeploy.backend import available_backends

    return available_backends()[name]


def _signal(text: str | None) -> str | None:
    if text is None:
        return None
    import re

    if not re.fullmatch(r"(?:SIG)?USR[12]@\d+", text):
        raise BadInput(f"{text!r} is not USR1@SECONDS or USR2@SECONDS", key="--signal",
                       hint="e.g. --signal USR1@60: the run's step gets SIGUSR1 60 s before the time limit")
    return text.removeprefix("SIG")


def _known_states(exp_dir: Path) -> dict[str, str]:
    """Ledger states without writing anything (for --dry-run)."""
    import sqlite3

    from expdeploy.ledger import LEDGER

    path = exp_dir / LEDGER
    if not path.exists():
        return {}
    db = sqlite3.connect(f"file:{path}?mode=ro", uri=True)
    try:
        return dict(db.execute("SELECT run_id, state FROM runs"))
    finally:
        db.close()


def _steps(text: str | None, known: tuple[str, ...]) -> tuple[str, ...] | None:
    if text is None:
        return None
    wanted = tuple(part.strip() for part in text.split(",") if part.strip())
    unknown = [s for s in wanted if s not in known]
    if unknown or not wanted:
        raise BadInput(f"no step named {', '.join(unknown) or repr(text)}", key="--steps",
                       hint=f"steps: {', '.join(known)}")
    return wanted


def _daemonize(log: Path) -> int | None:
    """Detach from the terminal (double fork, new session). Returns the daemon's pid in the
    original process and None in the daemon, whose output then goes to `log`."""
    import os

    sys.stdout.flush()
    sys.stderr.flush()
    read_end, write_end = os.pipe()
    first = os.fork()
    if first:
        os.close(write_end)
        os.waitpid(first, 0)
        with os.fdopen(read_end) as pipe:
            return int(pipe.read())
    os.close(read_end)
    os.setsid()
    if os.fork():
        os._exit(0)
    os.write(write_end, str(os.getpid()).encode())
    os.close(write_end)
    null = os.open(os.devnull, os.O_RDONLY)
    output = os.open(log, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o644)
    os.dup2(null, 0)
    os.dup2(output, 1)
    os.dup2(output, 2)
    return None


def _gpu_list(text: str | None) -> tuple[int, ...] | None:
    if text is None:
        return None
    try:
        return tuple(int(part) for part in text.split(",") if part.strip())
    except ValueError:
        raise BadInput(f"{text!r} is not a list of GPU indices", key="--gpus",
                       hint="e.g. --gpus 0,2,3") from None


def register(app: typer.Typer) -> None:
    app.command("run")(run_command)
