"""The Slurm backend's pure parts: the generated sbatch script (pinned by a golden file), the
mapping of generic resources, and parsing of squeue, sacct and scontrol output."""

from __future__ import annotations

import os
from pathlib import Path

import pytest

from expdeploy.errors import BadInput
from expdeploy.targets import SlurmSettings
from expdeploy_slurm.queue import expand_job_ids, parse_config, parse_scontrol, parse_table
from expdeploy_slurm.script import Chunk, resource_options, run_script, slurm_time

GOLDEN = Path(__file__).parent / "golden" / "array.sbatch"


def _script(header: str | None = None) -> str:
    settings = SlurmSettings(partition="gpu", account="proj", qos="normal", constraint="a100",
                             sbatch=("--exclusive", "--mail-type=END"),
                             setup=("module load cuda/12.1", "export OMP_NUM_THREADS=4"), header=header)
    chunk = Chunk(script="/work/me/exp/slurm/20261122-101010-1-0.sbatch",
                  tasks_file="/work/me/exp/slurm/20261122-101010-1-0.tasks", count=3,
                  resources={"gpus": 1, "cpus": 4, "mem": "8G", "time": "90m"})
    return run_script(job_name="ed-exp-1a2b3c4d", exp_dir="/work/me/exp", cwd="/work/me/proj", chunk=chunk,
                  throttle=2, settings=settings, signal="USR1@60", max_retries=2, python="python3",
                  runs=["lr=0.1", "lr=0.01", "lr=0.001"])


def test_generated_script_matches_golden_file() -> None:
    text = _script()
    if os.environ.get("EXPDEPLOY_UPDATE_GOLDEN"):
        GOLDEN.write_text(text)
    assert text == GOLDEN.read_text()


def test_script_is_valid_sh(tmp_path: Path) -> None:
    import subprocess

    path = tmp_path / "s.sbatch"
    path.write_text(_script())
    assert subprocess.run(["sh", "-n", str(path)]).returncode == 0


def test_header_file_lines_are_kept(tmp_path: Path) -> None:
    header = tmp_path / "header.sh"
    header.write_text("#!/bin/bash\n#SBATCH --nodelist=node7\nsource /etc/profile\n")
    text = _script(str(header))
    assert "#SBATCH --nodelist=node7" in text and "source /etc/profile" in text
    assert text.count("#!") == 1
    with pytest.raises(BadInput, match="header"):
        _script(str(tmp_path / "missing.sh"))


@pytest.mark.parametrize(("seconds", "expected"), [
    (60, "00:01:00"), (61, "00:02:00"), (5400, "01:30:00"), (86400 + 3600, "1-01:00:00")])
def test_slurm_time(seconds: int, expected: str) -> None:
    assert slurm_time(seconds) == expected


def test_resources_map_to_sbatch_options() -> None:
    resources = {"gpus": 2, "cpus": 8, "mem": "32G", "time": "2h"}
    assert resource_options(resources, SlurmSettings()) == [
        "--gres=gpu:2", "--cpus-per-task=8", "--mem=32G", "--time=02:00:00"]
    assert resource_options(resources, SlurmSettings(gpu_option="gpus-per-task"))[0] == "--gpus-per-task=2"
    assert resource_options({"gpus": 0}, SlurmSettings()) == []


def test_parse_squeue_and_sacct_tables() -> None:
    squeue = "123_0|RUNNING\n123_1|PENDING\n124_7|COMPLETING\n"
    assert parse_table(squeue) == {"123_0": "RUNNING", "123_1": "PENDING", "124_7": "COMPLETING"}
    sacct = "125_0|COMPLETED\n125_1|CANCELLED by 0\n125_[2-4,7%2]|PENDING\n"
    assert parse_table(sacct) == {"125_0": "COMPLETED", "125_1": "CANCELLED", "125_2": "PENDING",
                                  "125_3": "PENDING", "125_4": "PENDING", "125_7": "PENDING"}
    assert expand_job_ids("99") == ["99"]


def test_parse_scontrol_one_line_per_job() -> None:
    text = ("JobId=130 ArrayJobId=128 ArrayTaskId=2 JobName=x JobState=CANCELLED Reason=None\n"
            "JobId=128 ArrayJobId=128 ArrayTaskId=3-5 JobName=x JobState=PENDING Reason=Resources\n"
            "JobId=140 JobName=y JobState=COMPLETED\n")
    assert parse_scontrol(text) == {"128_2": "CANCELLED", "128_3": "PENDING", "128_4": "PENDING",
                                    "128_5": "PENDING", "140": "COMPLETED"}


def test_parse_config() -> None:
    config = parse_config("Configuration data as of ...\nMaxArraySize            = 10\n"
                          "AccountingStorageType   = accounting_storage/none\n")
    assert config["MaxArraySize"] == "10"
    assert config["AccountingStorageType"] == "accounting_storage/none"


def test_wandb_agent_array_matches_golden_file() -> None:
    from expdeploy_slurm.script import agent_script

    chunk = Chunk(script="/work/me/exp/slurm/20261201-101010-1-agents.sbatch", tasks_file="", count=4,
                  resources={"gpus": 1, "time": "4h"})
    text = agent_script(job_name="ed-exp-1a2b3c4d", exp_dir="/work/me/exp", cwd="/work/me/proj", chunk=chunk,
                        settings=SlurmSettings(partition="gpu"), python="python3",
                        command="env WANDB_TAGS=adam,fast wandb agent team/demo/abc123 --count 10")
    golden = GOLDEN.parent / "wandb_agents.sbatch"
    if os.environ.get("EXPDEPLOY_UPDATE_GOLDEN"):
        golden.write_text(text)
    assert text == golden.read_text()
    assert "WANDB_API_KEY" not in text, "the key comes from the environment of sbatch, never the script"
