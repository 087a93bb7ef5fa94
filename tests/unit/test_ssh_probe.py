"""Parsing what an SSH host says about itself, and choosing which copy of a run's state wins."""

from __future__ import annotations

from expdeploy.worker import attempt_rank as rank
from expdeploy_ssh.gather import rsync_literal
from expdeploy_ssh.probe import parse_probe


def test_probe_with_gpus() -> None:
    facts = parse_probe("hostname=gpu7\ncpus=32\ncwd=yes\ngpu=0, 423, 0\ngpu=1, 80000, 97\n")
    assert (facts.hostname, facts.cpus, facts.gpus, facts.has_cwd) == ("gpu7", 32, (0, 1), True)


def test_probe_ignores_what_nvidia_smi_says_when_it_fails() -> None:
    text = ("hostname=box\ncpus=8\ncwd=no\n"
            "gpu=NVIDIA-SMI has failed because it couldn't communicate with the NVIDIA driver.\n"
            "gpu=No devices were found\ngpu=  3 ,1,2\n")
    facts = parse_probe(text)
    assert facts.gpus == (3,) and facts.cpus == 8 and not facts.has_cwd


def test_probe_defaults_for_missing_or_odd_values() -> None:
    facts = parse_probe("cpus=lots\nnoise without equals\n")
    assert (facts.hostname, facts.cpus, facts.gpus, facts.has_cwd) == ("?", 1, (), False)


def test_newest_attempt_wins_and_an_end_beats_lost_beats_running() -> None:
    running1 = {"attempt": 1, "state": "running"}
    lost1 = {"attempt": 1, "state": "lost"}
    done1 = {"attempt": 1, "state": "succeeded"}
    running2 = {"attempt": 2, "state": "running"}
    assert rank(None) < rank(running1) < rank(lost1) < rank(done1) < rank(running2)


def test_rsync_literal_escapes_wildcards() -> None:
    assert rsync_literal("runs/a[1]*?") == "runs/a\\[1\\]\\*\\?"
