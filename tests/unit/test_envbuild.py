"""`env build` without a container runtime: the Dockerfile reader, the Singularity recipes converted
from Dockerfiles (pinned by golden files), the runscript run by sh against a stub program, the
shipped recipes in containers/, the build commands, and build() with stub build tools."""

from __future__ import annotations

import os
import re
import shlex
import stat
import subprocess
from pathlib import Path

import pytest

from expdeploy import envbuild
from expdeploy.envbuild import (
    GENERATED,
    Process,
    build,
    docker_build_command,
    dockerfile_to_singularity,
    find_singularity,
    needs_fakeroot,
    parse_form,
    read_dockerfile,
    read_stages,
    runscript,
    singularity_build_command,
)
from expdeploy.errors import EXIT_BAD_INPUT, BadInput, ExpdeployError

from helpers import REPO

GOLDEN = Path(__file__).parent / "golden"
CONTAINERS = REPO / "containers"

TRAIN = """\
FROM python:3.11-slim
COPY train.py /app/train.py
WORKDIR /app
CMD ["python3", "train.py"]
"""


def _golden(name: str, text: str) -> None:
    path = GOLDEN / name
    if os.environ.get("EXPDEPLOY_UPDATE_GOLDEN"):
        path.write_text(text)
    assert text == path.read_text()


def _sections(recipe: str) -> dict[str, list[str]]:
    """A recipe's header (key ""), then each %section's lines."""
    out: dict[str, list[str]] = {"": []}
    name = ""
    for line in recipe.splitlines():
        if re.match(r"%[a-z]+\b", line):
            name = line[1:].split()[0]
            out.setdefault(name, [])
        else:
            out[name].append(line)
    return out


def _runscript(dockerfile: str) -> list[str]:
    return _sections(dockerfile_to_singularity(dockerfile))["runscript"]


# --- golden recipes -----------------------------------------------------------------------------

def test_containers_dockerfile_converts_to_the_golden_recipe() -> None:
    _golden("containers.def", dockerfile_to_singularity((CONTAINERS / "Dockerfile").read_text()))


def test_exec_form_cmd_converts_to_the_golden_recipe() -> None:
    text = dockerfile_to_singularity(TRAIN)
    _golden("train.def", text)
    # spython writes `exec /bin/bash python3 train.py "$@"`: bash would read "python3" as a script
    assert _sections(text)["runscript"] == [
        "cd /app",
        'if [ "$#" -gt 0 ]; then exec "$@"; fi',
        "exec python3 train.py",
    ]
    assert _sections(text)["startscript"] == _sections(text)["runscript"]


def test_converted_recipes_are_valid_shell_and_headers(tmp_path: Path) -> None:
    for text in (dockerfile_to_singularity((CONTAINERS / "Dockerfile").read_text()),
                 dockerfile_to_singularity(TRAIN), (CONTAINERS / "expdeploy.def").read_text()):
        sections = _sections(text)
        header = [line for line in sections[""] if line.strip() and not line.startswith("#")]
        assert [line.split(":")[0] for line in header] == ["Bootstrap", "From"]
        assert set(sections) - {""} <= {"files", "labels", "post", "environment", "runscript",
                                        "startscript", "help"}
        for name in ("post", "environment", "runscript"):
            script = tmp_path / f"{name}.sh"
            script.write_text("\n".join(sections.get(name, [])) + "\n")
            assert subprocess.run(["sh", "-n", str(script)]).returncode == 0, name


# --- the runscript ------------------------------------------------------------------------------

def test_shell_form_cmd_runs_through_sh() -> None:
    assert _runscript("FROM x\nCMD python3 train.py\n") == [
        'if [ "$#" -gt 0 ]; then exec "$@"; fi',
        "exec /bin/sh -c 'python3 train.py'",
    ]


def test_shell_form_uses_the_dockerfile_shell_and_joins_continuations() -> None:
    text = 'FROM x\nSHELL ["/bin/bash", "-o", "pipefail", "-c"]\nCMD python3 \\\n    train.py --lr $LR\n'
    assert _runscript(text)[-1] == "exec /bin/bash -o pipefail -c 'python3     train.py --lr $LR'"


def test_entrypoint_with_cmd_as_default_arguments() -> None:
    assert _runscript('FROM x\nENTRYPOINT ["python3", "-u"]\nCMD ["train.py", "--lr", "0.1"]\n') == [
        'if [ "$#" -gt 0 ]; then exec python3 -u "$@"; fi',
        "exec python3 -u train.py --lr 0.1",
    ]
    assert _runscript('FROM x\nENTRYPOINT ["python3", "train.py"]\n') == ['exec python3 train.py "$@"']


def test_shell_form_entrypoint_ignores_cmd_and_arguments() -> None:
    assert _runscript('FROM x\nENTRYPOINT python3 serve.py\nCMD ["--port", "80"]\n') == [
        "exec /bin/sh -c 'python3 serve.py'"]


def test_entrypoint_resets_the_inherited_cmd_but_not_its_own() -> None:
    inherited = 'FROM x AS base\nCMD ["python3", "a.py"]\nFROM y AS final\nCOPY --from=base /a /a\n'
    assert read_stages(inherited)[1].process == Process()  # FROM an image: nothing inherited
    stages = read_stages('FROM x AS base\nCMD ["a"]\nFROM base AS next\nENTRYPOINT ["e"]\n')
    assert stages[1].process.cmd == ()  # reset: the CMD came from the base
    assert read_stages('FROM x\nCMD ["a"]\nENTRYPOINT ["e"]\n')[0].process.cmd == ("a",)


def test_no_entrypoint_or_cmd_keeps_the_base_images_runscript() -> None:
    text = dockerfile_to_singularity("FROM x\nRUN true\n")
    assert "%runscript" not in text and "%startscript" not in text
    assert _runscript('FROM x\nENTRYPOINT []\n') == ['exec "$@"']


def test_relative_workdirs_join_and_quote() -> None:
    assert _runscript('FROM x\nWORKDIR /w\nWORKDIR "my dir"\nCMD ["a"]\n')[0] == "cd '/w/my dir'"
    assert _runscript('FROM x\nENV D=/d\nWORKDIR $D/sub\nCMD ["a"]\n')[0] == 'cd "$D/sub"'


def _stub(bin_dir: Path, name: str) -> None:
    path = bin_dir / name
    path.write_text('#!/bin/sh\nbasename "$0"\nfor a in "$@"; do printf "[%s]\\n" "$a"; done\n')
    path.chmod(path.stat().st_mode | stat.S_IEXEC)


@pytest.mark.parametrize(("dockerfile", "args", "expected"), [
    ('CMD ["prog", "a b", "$HOME", "it\'s", "*"]', [], ["prog", "[a b]", "[$HOME]", "[it's]", "[*]"]),
    ('CMD ["prog", "default"]', ["other", "x y"], ["other", "[x y]"]),
    ('ENTRYPOINT ["prog", "--flag=$1"]\nCMD ["d 1"]', [], ["prog", "[--flag=$1]", "[d 1]"]),
    ('ENTRYPOINT ["prog", "--flag=$1"]\nCMD ["d 1"]', ["$x", "y z"],
     ["prog", "[--flag=$1]", "[$x]", "[y z]"]),
    ("CMD prog 'a b' $HOME", [], ["prog", "[a b]", "[/home/nobody]"]),
])
def test_runscript_passes_each_argument_literally(tmp_path: Path, dockerfile: str, args: list[str],
                                                  expected: list[str]) -> None:
    _stub(tmp_path, "prog")
    _stub(tmp_path, "other")
    script = tmp_path / "runscript"
    script.write_text("\n".join(_runscript(f"FROM x\n{dockerfile}\n")) + "\n")
    env = {"PATH": f"{tmp_path}:/usr/bin:/bin", "HOME": "/home/nobody"}
    done = subprocess.run(["sh", str(script), *args], capture_output=True, text=True, env=env, check=True)
    assert done.stdout.splitlines() == expected


def test_runscript_of_a_process() -> None:
    assert runscript(Process()) is None
    assert runscript(Process(cmd=("a",), workdir="/w")) == ["cd /w", 'if [ "$#" -gt 0 ]; then exec "$@"; fi',
                                                            "exec a"]


# --- reading Dockerfiles ------------------------------------------------------------------------

def test_reader_joins_continuations_and_drops_comments() -> None:
    text = "# syntax=docker/dockerfile:1\nFROM x\nRUN a \\\n    # inside\n    b \\\n\n    c\ncmd [\"z\"]\n"
    assert [(i.keyword, i.args, i.line) for i in read_dockerfile(text)] == [
        ("FROM", "x", 2), ("RUN", "a     b     c", 3), ("CMD", '["z"]', 8)]


def test_reader_honours_the_escape_directive() -> None:
    text = "# escape=`\nFROM x\nCMD echo a `\n  b\n"
    assert read_dockerfile(text)[-1].args == "echo a   b"


def test_parse_form() -> None:
    assert parse_form('["python3", "train.py"]') == ("python3", "train.py")
    assert parse_form("['python3']") == "['python3']"  # not JSON: the shell form, as Docker reads it
    assert parse_form('["a", 1]') == '["a", 1]'
    assert parse_form("python3 train.py") == "python3 train.py"


# --- what spython gets wrong in %post, %labels, %files ------------------------------------------

def test_post_environment_labels_and_files_are_corrected() -> None:
    text = dockerfile_to_singularity(
        "FROM --platform=linux/amd64 ubuntu:22.04\n"
        "ARG VERSION=1.0\n"
        'ENV DEBIAN_FRONTEND=noninteractive GREETING="hello world"\n'
        'LABEL org.opencontainers.image.title="my image" version=2\n'
        "COPY --chown=1000:1000 a.txt /opt/a.txt\n"
        "RUN apt-get update && \\\n    # a comment in the RUN\n    apt-get install -y curl\n"
        'RUN ["echo", "two words"]\n'
        "USER me\n"
        "HEALTHCHECK CMD curl -f http://localhost/\n")
    sections = _sections(text)
    assert "From: ubuntu:22.04" in sections[""]
    assert sections["post"] == [
        "export VERSION=1.0",
        "export DEBIAN_FRONTEND=noninteractive",
        'export GREETING="hello world"',
        "apt-get update && \\",
        "    apt-get install -y curl",
        "echo 'two words'",
        "# USER me",
    ]
    assert sections["labels"] == ["org.opencontainers.image.title my image", "version 2"]
    assert sections["files"] == ["a.txt /opt/a.txt"]
    assert "test" not in sections
    assert text.startswith(GENERATED + "\n")


def test_multi_stage_needs_named_stages_started_from_images() -> None:
    text = dockerfile_to_singularity("FROM a AS build\nRUN make\nFROM b AS run\nCOPY --from=build /out /out\n"
                                     'CMD ["/out/app"]\n')
    assert "Stage: build" in text and "Stage: run" in text and "%files from build" in text
    with pytest.raises(BadInput, match="unnamed stage") as error:
        dockerfile_to_singularity("FROM a\nRUN make\nFROM b AS run\n", origin="Dockerfile")
    assert str(error.value.where) == "Dockerfile:1"
    with pytest.raises(BadInput, match="FROM another stage"):
        dockerfile_to_singularity("FROM a AS build\nFROM build AS run\n")


@pytest.mark.parametrize(("text", "message"), [
    ("", "no FROM"),
    ("# only a comment\nRUN true\n", "RUN before the first FROM"),
    ("FROM --platform=x\n", "names no image"),
    ("FROM x\nSHELL /bin/bash -c\n", "SHELL needs the exec form"),
])
def test_malformed_dockerfiles_are_bad_input(text: str, message: str) -> None:
    with pytest.raises(BadInput, match=message) as error:
        dockerfile_to_singularity(text, origin="proj/Dockerfile")
    assert error.value.exit_code == EXIT_BAD_INPUT
    assert str(error.value).startswith("proj/Dockerfile")


# --- the recipes shipped in containers/ ---------------------------------------------------------

def _apt_packages(script: str) -> set[str]:
    joined = script.replace("\\\n", " ")
    match = re.search(r"apt-get install ([^&\n]*)", joined)
    assert match
    return {word for word in match.group(1).split() if not word.startswith("-")}


def test_shipped_dockerfile_and_def_carry_the_same_system_layer_and_no_python_env() -> None:
    dockerfile = (CONTAINERS / "Dockerfile").read_text()
    recipe = (CONTAINERS / "expdeploy.def").read_text()
    base = read_stages(dockerfile)[-1].image
    assert base.startswith("nvidia/cuda:") and "runtime" in base
    assert f"From: {base}" in recipe
    run = "\n".join(i.args for i in read_dockerfile(dockerfile) if i.keyword == "RUN")
    assert _apt_packages(run) == _apt_packages("\n".join(_sections(recipe)["post"]))
    for text in (run, "\n".join(_sections(recipe)["post"])):
        commands = [line for line in text.splitlines() if not line.strip().startswith("#")]
        assert not re.search(r"\b(pip|conda|mamba|venv|python3?)\b", "\n".join(commands))
    assert read_stages(dockerfile)[-1].process == Process(entrypoint=(), cmd=("/bin/bash",))


def test_shipped_def_runscript_execs_its_arguments(tmp_path: Path) -> None:
    script = tmp_path / "runscript"
    script.write_text("\n".join(_sections((CONTAINERS / "expdeploy.def").read_text())["runscript"]) + "\n")
    done = subprocess.run(["sh", str(script), "printf", "[%s]\n", "a b", "$HOME"], capture_output=True,
                          text=True, check=True)
    assert done.stdout == "[a b]\n[$HOME]\n"


def test_the_shipped_recipes_are_found_where_expdeploy_is_installed() -> None:
    # package data in a wheel (expdeploy/recipes), containers/ in a checkout
    recipes = envbuild.default_recipes()
    assert (recipes / "Dockerfile").read_text() == (CONTAINERS / "Dockerfile").read_text()
    assert (recipes / "expdeploy.def").read_text() == (CONTAINERS / "expdeploy.def").read_text()


# --- build commands -----------------------------------------------------------------------------

def test_singularity_build_command() -> None:
    assert singularity_build_command(Path("/r/x.def"), Path("/i/x.sif"), "apptainer", fakeroot=True) == [
        "apptainer", "build", "--fakeroot", "/i/x.sif", "/r/x.def"]
    assert singularity_build_command(Path("x.def"), Path("x.sif"), "singularity", False, force=True) == [
        "singularity", "build", "--force", "x.sif", "x.def"]


def test_docker_build_command_has_no_network_flag_unless_asked() -> None:
    assert docker_build_command(Path("/ctx"), Path("/ctx/Dockerfile"), "me/img:1") == [
        "docker", "build", "-t", "me/img:1", "-f", "/ctx/Dockerfile", "/ctx"]
    assert docker_build_command(Path("/ctx"), Path("/ctx/D"), "t", "podman", ["--pull=never"],
                                network_none=True) == [
        "podman", "build", "-t", "t", "-f", "/ctx/D", "--network=none", "--pull=never", "/ctx"]


def _tool(path: Path, body: str) -> Path:
    path.write_text("#!/bin/sh\n" + body)
    path.chmod(path.stat().st_mode | stat.S_IEXEC)
    return path


def test_find_singularity_prefers_apptainer(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("PATH", str(tmp_path))
    assert find_singularity() is None
    _tool(tmp_path / "singularity", "")
    assert find_singularity() == str(tmp_path / "singularity")
    _tool(tmp_path / "apptainer", "")
    assert find_singularity() == str(tmp_path / "apptainer")


def test_needs_fakeroot_unless_root(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(os, "geteuid", lambda: 1000)
    assert needs_fakeroot()
    monkeypatch.setattr(os, "geteuid", lambda: 0)
    assert not needs_fakeroot()


# --- build() ------------------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    (tmp_path / "proj").mkdir()
    (tmp_path / "proj" / "Dockerfile").write_text(TRAIN)
    monkeypatch.chdir(tmp_path)
    return tmp_path / "proj"


def test_without_singularity_the_recipe_is_written_and_the_command_left(
        project: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envbuild, "find_singularity", lambda: None)
    monkeypatch.setattr(envbuild, "needs_fakeroot", lambda: True)
    result = build(project / "Dockerfile", out=Path("images/train.sif"))
    image = project.parent / "images" / "train.sif"
    assert not result.ran and result.kind == "singularity"
    assert result.written == (image.with_suffix(".def"),) and result.recipe == image.with_suffix(".def")
    assert result.recipe.read_text() == (GOLDEN / "train.def").read_text()
    assert result.command == ("apptainer", "build", "--fakeroot", "--force", str(image), str(result.recipe))
    assert result.cwd == project and result.image == str(image)
    assert result.shell == f"cd {shlex.quote(str(project))} && {shlex.join(result.command)}"
    assert build(project, out=Path("images/train.sif")).written == result.written  # rewritten


def test_a_def_recipe_is_built_as_it_is(project: Path, tmp_path: Path) -> None:
    recipe = project / "x.def"
    recipe.write_text("Bootstrap: docker\nFrom: x\n")
    apptainer = _tool(tmp_path / "apptainer", 'pwd; echo "$@"\n')
    lines: list[str] = []
    result = build(recipe, runtime=str(apptainer), fakeroot=False, on_line=lines.append)
    image = tmp_path / "expdeploy.sif"
    assert result.ran and result.written == () and result.recipe == recipe
    assert lines == [str(project), f"build --force {image} {recipe}"]


def test_a_recipe_written_by_someone_else_is_not_overwritten(project: Path,
                                                             monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(envbuild, "find_singularity", lambda: None)
    (project.parent / "mine.def").write_text("Bootstrap: docker\nFrom: mine\n")
    with pytest.raises(BadInput, match="not written by expdeploy"):
        build(project, out=Path("mine.sif"))
    assert (project.parent / "mine.def").read_text() == "Bootstrap: docker\nFrom: mine\n"


@pytest.mark.parametrize("docker", [False, True])
def test_missing_sources_are_bad_input(tmp_path: Path, docker: bool) -> None:
    for source, message in ((tmp_path / "nope", "does not exist"), (tmp_path, "has no Dockerfile")):
        with pytest.raises(BadInput, match=message) as error:
            build(source, docker=docker)
        assert error.value.exit_code == EXIT_BAD_INPUT and error.value.hint


def test_docker_build_needs_a_dockerfile_and_the_tool(project: Path) -> None:
    (project / "x.def").write_text("Bootstrap: docker\nFrom: x\n")
    with pytest.raises(BadInput, match="Singularity recipe"):
        build(project / "x.def", docker=True)
    with pytest.raises(BadInput, match="is not installed") as error:
        build(project, docker=True, runtime="no-such-docker-here")
    assert error.value.hint and "podman" in error.value.hint


def test_build_streams_lines_and_passes_env(project: Path, tmp_path: Path) -> None:
    docker = _tool(tmp_path / "docker", 'echo "Step 1/2 : FROM x"; printf "50%%\\r100%%\\n" >&2; '
                                        'echo "$MY_VAR"; echo "$@"\n')
    lines: list[str] = []
    result = build(project, docker=True, tag="me/t:1", runtime=str(docker), network_none=True,
                   env={"MY_VAR": "from env"}, on_line=lines.append)
    assert result.ran and result.image == "me/t:1" and result.kind == "docker"
    assert sorted(lines) == sorted(["Step 1/2 : FROM x", "50%", "100%", "from env",
                                    f"build -t me/t:1 -f {project / 'Dockerfile'} --network=none {project}"])


def test_a_failed_build_reports_the_tools_last_error_line(project: Path, tmp_path: Path) -> None:
    docker = _tool(tmp_path / "docker", 'echo "Step 2/2 : RUN false"; echo "warning: noise" >&2; '
                                        'echo "The command returned a non-zero code: 1" >&2; exit 3\n')
    lines: list[str] = []
    with pytest.raises(ExpdeployError) as error:
        build(project, docker=True, runtime=str(docker), on_line=lines.append)
    assert not isinstance(error.value, BadInput)
    assert error.value.message == "docker build failed (exit 3): The command returned a non-zero code: 1"
    assert error.value.hint and str(docker) in error.value.hint
    assert "Step 2/2 : RUN false" in lines
