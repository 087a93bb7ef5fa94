"""`env build` for real: Docker and podman images built from a local base image (bb:latest, no
registry, no network), the converted Singularity runscript run inside them against `docker run`,
failed builds, and a Singularity build where apptainer/singularity is installed."""

from __future__ import annotations

import re
import subprocess
import uuid
from collections.abc import Iterator
from pathlib import Path

import pytest
from services.containers import Containers

from expdeploy.envbuild import BuildResult, build, dockerfile_to_singularity, find_singularity
from expdeploy.errors import ExpdeployError

pytestmark = pytest.mark.integration

DOCKER = "/usr/bin/docker"  # the client matching the fixture's dockerd

HELLO = """\
FROM bb:latest
COPY hello.txt /hello.txt
WORKDIR /srv
CMD ["cat", "/hello.txt"]
"""

SHOW = '#!/bin/sh\necho "cwd=$(pwd)"\nfor a in "$@"; do echo "[$a]"; done\n'

# What `docker run` runs, per Dockerfile; the runscript converted from each must run the same.
PROCESSES = {
    "cmd": 'CMD ["show", "a b", "$HOME", "it\'s"]',
    "entrypoint+cmd": 'ENTRYPOINT ["show", "--x=$1"]\nCMD ["default arg"]',
    "shell cmd": "CMD show 'one two' $HOME",
    "shell entrypoint": 'ENTRYPOINT show fixed\nCMD ["ignored"]',
}


@pytest.fixture
def tag(containers: Containers) -> Iterator[str]:
    name = f"expdeploy-test/{uuid.uuid4().hex[:8]}:1"
    yield name
    containers.docker("rmi", "-f", name)
    containers.podman_run("rmi", "-f", f"localhost/{name}")


def _context(tmp_path: Path, dockerfile: str, files: dict[str, str] | None = None) -> Path:
    context = tmp_path / "ctx"
    context.mkdir()
    (context / "Dockerfile").write_text(dockerfile)
    for name, text in (files or {}).items():
        (context / name).write_text(text)
    return context


def _docker_build(containers: Containers, context: Path, tag: str, lines: list[str]) -> BuildResult:
    return build(context, docker=True, tag=tag, runtime=DOCKER, network_none=True,
                 env={"DOCKER_HOST": containers.docker_host}, on_line=lines.append)


def test_docker_build_from_a_local_base_image(containers: Containers, tmp_path: Path, tag: str) -> None:
    context = _context(tmp_path, HELLO, {"hello.txt": "built by expdeploy\n"})
    lines: list[str] = []
    result = _docker_build(containers, context, tag, lines)
    assert result.ran and result.image == tag and result.cwd == context
    assert result.command[:2] == (DOCKER, "build") and "--network=none" in result.command
    assert any("COPY hello.txt /hello.txt" in line for line in lines), lines
    ran = containers.docker("run", "--rm", "--network=none", tag)
    assert (ran.returncode, ran.stdout) == (0, "built by expdeploy\n"), ran.stderr


def test_podman_build_from_a_local_base_image(containers: Containers, tmp_path: Path, tag: str) -> None:
    context = _context(tmp_path, HELLO.replace("bb:latest", "localhost/bb:latest"),
                       {"hello.txt": "built by podman\n"})
    lines: list[str] = []
    result = build(context, docker=True, tag=tag, runtime=str(containers.podman), network_none=True,
                   on_line=lines.append)
    assert result.ran and result.command[0] == str(containers.podman)
    assert any("COPY hello.txt /hello.txt" in line for line in lines), lines
    ran = containers.podman_run("run", "--rm", "--network=none", f"localhost/{tag}")
    assert (ran.returncode, ran.stdout) == (0, "built by podman\n"), ran.stderr


@pytest.mark.parametrize("process", list(PROCESSES))
def test_converted_runscript_runs_what_docker_runs(containers: Containers, tmp_path: Path, tag: str,
                                                   process: str) -> None:
    dockerfile = ("FROM bb:latest\nCOPY show /bin/show\nRUN chmod +x /bin/show\nWORKDIR /tmp\n"
                  f"{PROCESSES[process]}\n")
    context = _context(tmp_path, dockerfile, {"show": SHOW})
    _docker_build(containers, context, tag, [])
    recipe = dockerfile_to_singularity(dockerfile)
    lines = recipe.split("%runscript\n", 1)[1].split("%startscript\n", 1)[0]
    (tmp_path / "runscript").write_text(lines)
    mount = ["-v", f"{tmp_path / 'runscript'}:/runscript:ro", "--entrypoint", "/bin/sh", "-w", "/"]
    for args in ([], ["show", "x y", "$z"]):
        docker = containers.docker("run", "--rm", "--network=none", "-e", "HOME=/home/h", tag, *args)
        ours = containers.docker("run", "--rm", "--network=none", "-e", "HOME=/home/h", *mount, tag,
                                 "/runscript", *args)
        assert docker.returncode == 0, docker.stderr
        assert (ours.returncode, ours.stdout) == (0, docker.stdout), (args, lines, ours.stderr)


@pytest.mark.parametrize("runtime", ["docker", "podman"])
def test_a_failed_build_raises_with_the_tools_message(containers: Containers, tmp_path: Path, tag: str,
                                                      runtime: str) -> None:
    base = "bb:latest" if runtime == "docker" else "localhost/bb:latest"
    context = _context(tmp_path, f"FROM {base}\nRUN echo about to fail; false\n")
    lines: list[str] = []
    program = DOCKER if runtime == "docker" else str(containers.podman)
    with pytest.raises(ExpdeployError) as error:
        build(context, docker=True, tag=tag, runtime=program, network_none=True,
              env={"DOCKER_HOST": containers.docker_host}, on_line=lines.append)
    message = error.value.message
    assert message.startswith(f"{Path(program).name} build failed (exit "), message
    assert "false" in message.split(": ", 1)[1], message  # the tool's own line names the failed RUN
    assert "about to fail" in lines, lines
    assert error.value.hint and "--network=none" in error.value.hint


def test_a_missing_base_image_fails_without_a_network(containers: Containers, tmp_path: Path,
                                                      tag: str) -> None:
    context = _context(tmp_path, "FROM expdeploy-test/absent:0\nCMD [\"true\"]\n")
    with pytest.raises(ExpdeployError, match="docker build failed") as error:
        _docker_build(containers, context, tag, [])
    # without a network dockerd cannot reach the registry; with one, the registry has no such image
    assert re.search(r"registry|absent", error.value.message.split(": ", 1)[1]), error.value.message


SINGULARITY = find_singularity()


@pytest.mark.skipif(SINGULARITY is None, reason="no `apptainer` or `singularity` binary on PATH")
def test_singularity_build_from_a_converted_dockerfile(containers: Containers, tmp_path: Path) -> None:
    assert SINGULARITY is not None
    archive = tmp_path / "bb.tar"
    saved = containers.docker("save", "-o", str(archive), "bb:latest")
    assert saved.returncode == 0, saved.stderr
    context = _context(tmp_path, HELLO, {"hello.txt": "built by singularity\n"})
    image = tmp_path / "hello.sif"
    # what a network would give: the base image from docker-archive instead of a registry
    recipe = dockerfile_to_singularity(HELLO).replace("Bootstrap: docker\nFrom: bb:latest",
                                                      f"Bootstrap: docker-archive\nFrom: {archive}")
    (context / "hello.def").write_text(recipe)
    lines: list[str] = []
    result = build(context / "hello.def", out=image, runtime=SINGULARITY, on_line=lines.append)
    assert result.ran and image.is_file(), lines
    ran = subprocess.run([SINGULARITY, "run", str(image)], capture_output=True, text=True, timeout=120)
    assert (ran.returncode, ran.stdout) == (0, "built by singularity\n"), ran.stderr
