"""Runs inside real containers through the local backend (tests/services/containers.py: a private
dockerd and podman store, images imported from a rootfs tarball, no registry): mounts and
working directory, exit codes, cancel, and environments mounted by reference into an image
that has no Python of its own."""

from __future__ import annotations

import json
import os
import shutil
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest
from conftest import Project, wait_until
from services.containers import Containers

pytestmark = pytest.mark.integration

RUNTIMES = ["docker", "podman"]


@pytest.fixture
def boxed(project: Project, containers: Containers) -> Project:
    """The project, its commands able to reach the test's dockerd and podman store."""
    project.env["DOCKER_HOST"] = containers.docker_host
    project.env["PATH"] = f"{containers.podman.parent}:{os.environ['PATH']}"
    return project


def image(runtime: str, name: str = "bb") -> str:
    return f"{name}:latest" if runtime == "docker" else f"localhost/{name}:latest"


def listed(containers: Containers, runtime: str) -> list[str]:
    """Names of the containers that exist (running or not) in that runtime."""
    command = ["ps", "-a", "--format", "{{.Names}}"]
    done = containers.docker(*command) if runtime == "docker" else containers.podman_run(*command)
    assert done.returncode == 0, done.stderr
    return [n for n in done.stdout.split() if n.startswith("ed-")]


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_a_grid_runs_inside_with_mounts_cwd_and_exit_codes(boxed: Project, containers: Containers,
                                                           runtime: str) -> None:
    boxed.write("data.txt", "shared data\n")
    boxed.write("grid.yml", f"""
        name: boxed
        command: >-
          echo $(pwd) $EXPDEPLOY_RUN_NAME $(cat data.txt) > {{run_dir}}/inside.txt &&
          (test -e /.dockerenv || test -e /run/.containerenv) &&
          echo {{x}} > out-{{x}}.txt && test {{x}} != bad
        grid:
          x: [a, bad]
        env:
          docker: {image(runtime)}
          runtime: {runtime}
          args: [--network=none]
    """)
    done = boxed.run("run", "grid.yml", timeout=120)
    assert done.returncode == 1, done.stdout + done.stderr
    assert boxed.states("boxed") == {"x=a": "succeeded", "x=bad": "failed"}
    assert boxed.state_files("boxed")["x=bad"]["exit_code"] == 1
    inside = (boxed.exp("boxed") / "runs" / "x=a" / "inside.txt").read_text()
    assert inside == f"{boxed.root} x=a shared data\n", "same paths inside: cwd, experiment, data"
    assert (boxed.root / "out-a.txt").read_text() == "a\n", "the working directory is the project's"
    assert listed(containers, runtime) == [], "--rm: no container left"


@pytest.mark.parametrize("runtime", RUNTIMES)
def test_ctrl_c_stops_the_container(boxed: Project, containers: Containers, runtime: str) -> None:
    boxed.write("grid.yml", f"""
        name: stop
        command: sleep 300
        env:
          docker: {image(runtime)}
          runtime: {runtime}
          args: [--network=none]
    """)
    controller = boxed.start("run", "grid.yml", "--grace", "5")
    wait_until(lambda: listed(containers, runtime), 60, "the run's container")
    wait_until(lambda: set(boxed.states("stop").values()) == {"running"}, 30, "the run recorded running")
    controller.send_signal(signal.SIGINT)
    out, _ = controller.communicate(timeout=60)
    assert controller.returncode == 130, out
    assert set(boxed.states("stop").values()) == {"cancelled"}
    wait_until(lambda: listed(containers, runtime) == [], 30, "no container left")


def test_missing_image_is_one_line_before_anything_starts(boxed: Project) -> None:
    boxed.write("grid.yml", "name: noimage\ncommand: echo {x}\ngrid:\n  x: [1]\nenv:\n  docker: nosuch:1\n")
    done = boxed.run("run", "grid.yml")
    assert done.returncode == 2, done.stdout + done.stderr
    assert "grid.yml:5: env: docker has no image nosuch:1" in done.stderr
    assert "Traceback" not in done.stderr
    assert not boxed.exp("noimage").exists(), "nothing written"


def test_venv_by_reference_runs_in_an_image_without_python(boxed: Project, containers: Containers) -> None:
    venv = boxed.root / "venv"
    subprocess.run([sys.executable, "-m", "venv", "--without-pip", str(venv)], check=True)
    assert containers.docker("run", "--rm", "--network=none", "bblibc:latest", "sh", "-c",
                             "command -v python3 || command -v python").returncode != 0, "no Python inside"
    boxed.write("grid.yml", f"""
        name: venv
        command: >-
          python -c 'import json, sys; print(json.dumps([sys.prefix, sys.argv[1]]))' {{x}}
          > {{run_dir}}/py.json
        grid:
          x: [1, 2]
        env:
          venv: {venv}
          docker: bblibc:latest
          args: [--network=none]
    """)
    done = boxed.run("run", "grid.yml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for x in ("1", "2"):
        prefix, arg = json.loads((boxed.exp("venv") / "runs" / f"x={x}" / "py.json").read_text())
        assert (prefix, arg) == (str(venv), x)


def conda_prefix(root: Path) -> Path:
    """A conda-layout env: its own interpreter and standard library (hard links to this one's),
    `conda-meta/`, and an activation script that the interpreter needs to start at all."""
    base = Path(os.path.realpath(sys.base_prefix))
    version = f"python{sys.version_info[0]}.{sys.version_info[1]}"
    prefix = root / "envs" / "proj"
    (prefix / "bin").mkdir(parents=True)
    (prefix / "conda-meta").mkdir()
    (prefix / "conda-meta" / "history").write_text("")
    shutil.copy2(os.path.realpath(base / "bin" / version), prefix / "bin" / version)
    (prefix / "bin" / "python").symlink_to(version)
    (prefix / "lib").mkdir()
    for lib in (base / "lib").glob("libpython*"):
        os.link(lib, prefix / "lib" / lib.name)
    skip = shutil.ignore_patterns("site-packages", "test", "idlelib", "tkinter", "turtledemo", "__pycache__")
    shutil.copytree(base / "lib" / version, prefix / "lib" / version, ignore=skip, copy_function=os.link)
    activate = prefix / "etc" / "conda" / "activate.d"
    activate.mkdir(parents=True)
    # the copied interpreter finds its libpython only through what activation sets
    (activate / "libs.sh").write_text('export LD_LIBRARY_PATH="$CONDA_PREFIX/lib"\n'
                                      'export PROJ_ACTIVATED=yes\n')
    return prefix


def test_conda_env_by_reference_with_its_activation_scripts(boxed: Project, containers: Containers) -> None:
    prefix = conda_prefix(boxed.root)
    boxed.write("grid.yml", f"""
        name: conda
        command: >-
          python -c 'import os, sys; print(sys.prefix, os.environ["PROJ_ACTIVATED"])'
          > {{run_dir}}/py.txt
        env:
          conda: {prefix}
          docker: bblibc:latest
          args: [--network=none]
    """)
    done = boxed.run("run", "grid.yml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    (out,) = (boxed.exp("conda") / "runs").glob("*/py.txt")
    assert out.read_text() == f"{prefix} yes\n"


def test_env_show_prints_the_wrapped_commands(boxed: Project) -> None:
    boxed.write("grid.yml", """
        name: shown
        command: python train.py --lr {lr}
        grid:
          lr: [0.1, 0.01]
        env:
          conda: /opt/envs/proj
          docker: me/train:1
    """)
    done = boxed.run("env", "show", "grid.yml", "--run", "lr=0.01")
    assert done.returncode == 0, done.stderr
    lines = done.stdout.splitlines()
    assert lines[0].startswith("# lr=0.01 (")
    assert lines[1].startswith("[main] docker run --rm --name ed-") and lines[1].endswith(
        "python train.py --lr 0.01'")
    assert lines[2].startswith("[on cancel] docker rm -f ed-")
    assert not boxed.exp("shown").exists(), "show writes nothing"


def test_env_build_docker_from_a_local_base_image(boxed: Project, containers: Containers) -> None:
    (boxed.root / "ctx").mkdir()
    boxed.write("ctx/Dockerfile", 'FROM bb:latest\nCOPY hello.txt /hello.txt\nCMD ["cat", "/hello.txt"]\n')
    boxed.write("ctx/hello.txt", "built here\n")
    done = boxed.run("env", "build", "--docker", "--from", "ctx", "--tag", "hello:1", "--network-none",
                     timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert "built hello:1" in done.stdout
    ran = containers.docker("run", "--rm", "--network=none", "hello:1")
    assert ran.stdout == "built here\n", ran.stderr


def test_singularity_runs_a_grid_where_it_is_installed(boxed: Project, containers: Containers) -> None:
    binary = shutil.which("apptainer") or shutil.which("singularity")
    if binary is None:
        pytest.skip("no apptainer or singularity binary here (Debian 12 packages neither)")
    archive = boxed.root / "bb.tar"
    assert containers.docker("save", "-o", str(archive), "bb:latest").returncode == 0
    sif = boxed.root / "bb.sif"
    built = subprocess.run([binary, "build", str(sif), f"docker-archive://{archive}"], capture_output=True,
                           text=True, timeout=300, check=False)
    assert built.returncode == 0, built.stderr
    boxed.write("grid.yml", f"""
        name: sif
        command: echo {{x}} $EXPDEPLOY_RUN_NAME $(pwd) > {{run_dir}}/inside.txt
        grid:
          x: [1, 2]
        env:
          singularity: {sif}
          cleanenv: true
    """)
    done = boxed.run("run", "grid.yml", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    for x in ("1", "2"):
        inside = (boxed.exp("sif") / "runs" / f"x={x}" / "inside.txt").read_text()
        assert inside == f"{x} x={x} {boxed.root}\n"


def test_a_targets_wrap_replaces_the_specs_container(boxed: Project, containers: Containers,
                                                     slurm: Any) -> None:
    """The spec asks for Singularity (absent here); target `here` (this machine's Slurm) says
    Docker: its runs go into Docker containers, the spec's other layers untouched."""
    boxed.env.update(slurm.env)
    boxed.write("expdeploy.toml", """
        [targets.here]
        backend = "slurm"
        [targets.here.wrap]
        docker = "bb:latest"
        args = ["--network=none"]
    """)
    boxed.write("grid.yml", """
        name: wrapped
        command: (test -e /.dockerenv && echo inside || echo outside) > {run_dir}/where.txt
        grid:
          x: [1, 2]
        env:
          singularity: /nowhere/img.sif
          nv: true
    """)
    refused = boxed.run("run", "grid.yml", "--backend", "local")
    assert refused.returncode == 2 and "neither apptainer nor singularity is installed here" in refused.stderr
    done = boxed.run("run", "grid.yml", "--target", "here", timeout=120)
    assert done.returncode == 0, done.stdout + done.stderr
    assert {p.read_text() for p in (boxed.exp("wrapped") / "runs").glob("*/where.txt")} == {"inside\n"}
    bad = boxed.write("expdeploy.toml", '[targets.here]\nbackend = "slurm"\n[targets.here.wrap]\nnv = 1\n')
    wrong = boxed.run("run", "grid.yml", "--target", "here")
    assert wrong.returncode == 2, wrong.stderr
    assert f"{bad}:3: targets.here.wrap.nv: expected true or false" in wrong.stderr
