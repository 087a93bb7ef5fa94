"""Runs started from a project's own venv find its `python` first, as if it were activated; a
tool's venv elsewhere (pipx) and an active one are left alone."""

from __future__ import annotations

from pathlib import Path

from expdeploy.environments import project_venv_bin


def test_a_venv_inside_the_project_goes_first_on_path(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    assert project_venv_bin(tmp_path, str(venv), "/usr", "/usr/bin:/bin") == str(venv / "bin")


def test_other_venvs_and_active_ones_are_left_alone(tmp_path: Path) -> None:
    venv = tmp_path / ".venv"
    (venv / "bin").mkdir(parents=True)
    elsewhere = tmp_path / "pipx" / "venvs" / "expdeploy"
    (elsewhere / "bin").mkdir(parents=True)
    project = tmp_path / "project"
    project.mkdir()
    assert project_venv_bin(project, str(elsewhere), "/usr", "/usr/bin") is None, "a tool's venv"
    assert project_venv_bin(tmp_path, str(venv), "/usr", f"{venv}/bin:/usr/bin") is None, "active"
    assert project_venv_bin(tmp_path, "/usr", "/usr", "/usr/bin") is None, "no venv at all"
