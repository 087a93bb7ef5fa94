"""SshShell and `expdeploy targets` against a real sshd on loopback: aliases through Include, env,
host key verification (changed, unknown, opted out), rsync both ways, and the CLI's exit codes."""

from __future__ import annotations

import json
import subprocess
from collections.abc import Callable, Iterator
from dataclasses import replace
from pathlib import Path
from typing import Any

import pytest
from services.ssh import Sshd

from expdeploy.remote import RemoteError, SshShell, resolve_host, shell_for
from expdeploy.targets import Target

pytestmark = pytest.mark.integration


def write_config(directory: Path, sshd: Sshd, known_hosts: Path) -> Path:
    """An ssh_config that defines the alias `lab-box` only in a file it Includes."""
    (directory / "conf.d").mkdir(parents=True, exist_ok=True)
    (directory / "conf.d" / "lab.conf").write_text(
        f"Host lab-box\n  HostName 127.0.0.1\n  Port {sshd.port}\n  User root\n"
        f"  IdentityFile {sshd.key}\n  UserKnownHostsFile {known_hosts}\n")
    config = directory / "ssh_config"
    config.write_text(f"Include {directory}/conf.d/*.conf\n"
                      "Host *\n  IdentitiesOnly yes\n  BatchMode yes\n  ConnectTimeout 5\n"
                      "  GlobalKnownHostsFile none\n")
    return config


@pytest.fixture
def lab(tmp_path: Path, sshd: Sshd) -> Target:
    config = write_config(tmp_path / "ssh", sshd, sshd.known_hosts)
    return Target(name="lab", backend="ssh", hosts=("lab-box",), ssh_config=str(config),
                  env={"EXP_VALUE": "a b $HOME 'q'", "EXP_OTHER": "2"})


@pytest.fixture
def shell(lab: Target) -> Iterator[SshShell]:
    opened = shell_for(lab)
    assert isinstance(opened, SshShell)
    yield opened
    opened.close()


def other_host_key(tmp_path: Path) -> str:
    key = tmp_path / "other_host_key"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True)
    return " ".join(key.with_suffix(".pub").read_text().split()[:2])


def test_run_through_an_included_alias(shell: SshShell, sshd: Sshd) -> None:
    assert shell.endpoint.hostname == "127.0.0.1" and shell.endpoint.port == sshd.port
    assert shell.label == f"root@127.0.0.1:{sshd.port}"
    done = shell.run("echo ok; whoami")
    assert (done.code, done.stdout, done.stderr) == (0, "ok\nroot\n", "")


def test_exit_status_stdin_and_stderr_come_back(shell: SshShell) -> None:
    done = shell.run("cat; echo oops >&2; exit 3", stdin="line one\nline two\n")
    assert (done.code, done.stdout, done.stderr) == (3, "line one\nline two\n", "oops\n")
    assert shell.run("true").code == 0  # the connection is reused after a failing command


def test_target_env_reaches_the_command_literally(shell: SshShell) -> None:
    done = shell.run('printf "%s|%s" "$EXP_VALUE" "$EXP_OTHER"')
    assert done.stdout == "a b $HOME 'q'|2"


def test_changed_host_key_is_refused(tmp_path: Path, sshd: Sshd, lab: Target) -> None:
    known = tmp_path / "changed_known_hosts"
    known.write_text(f"[127.0.0.1]:{sshd.port} {other_host_key(tmp_path)}\n")
    target = replace(lab, ssh_config=str(write_config(tmp_path / "changed", sshd, known)))
    for accept in (False, True):  # opting out covers unknown keys, never changed ones
        with pytest.raises(RemoteError) as caught:
            SshShell(replace(target, accept_unknown_host_keys=accept), "lab-box").run("true")
        message = str(caught.value)
        assert "does not match" in message
        assert f"127.0.0.1:{sshd.port}" in message and str(known) in message
        assert caught.value.hint is not None and "ssh-keygen -R" in caught.value.hint


def test_unknown_host_key_is_refused(tmp_path: Path, sshd: Sshd, lab: Target) -> None:
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    target = replace(lab, ssh_config=str(write_config(tmp_path / "unknown", sshd, known)))
    with pytest.raises(RemoteError) as caught:
        SshShell(target, "lab-box").run("true")
    message = str(caught.value)
    assert message.startswith(f"unknown host key for root@127.0.0.1:{sshd.port}")
    assert str(known) in message and "\n" not in message
    assert caught.value.hint is not None
    assert "ssh-keyscan" in caught.value.hint and "accept_unknown_host_keys = true" in caught.value.hint


def test_accept_unknown_host_keys_connects_and_writes_no_file(tmp_path: Path, sshd: Sshd,
                                                               lab: Target) -> None:
    known = tmp_path / "empty_known_hosts"
    known.write_text("")
    config = write_config(tmp_path / "accept", sshd, known)
    target = replace(lab, ssh_config=str(config), accept_unknown_host_keys=True)
    shell = SshShell(target, "lab-box")
    try:
        assert shell.run("echo ok").stdout == "ok\n"
        source = tmp_path / "src"
        source.mkdir()
        (source / "f.txt").write_text("pushed")
        shell.push(source, str(tmp_path / "accepted-dest"))  # rsync's ssh trusts the key fabric saw
        assert (tmp_path / "accepted-dest" / "f.txt").read_text() == "pushed"
    finally:
        shell.close()
    assert known.read_text() == ""


def test_push_and_pull_round_trip(tmp_path: Path, shell: SshShell) -> None:
    source = tmp_path / "source"
    (source / "sub").mkdir(parents=True)
    (source / "a.txt").write_text("A")
    (source / "sub" / "b.log").write_text("B")
    (source / "skip.tmp").write_text("no")
    remote = f"{tmp_path}/remote side/deep/er"  # parents do not exist; a space in the path
    shell.push(source, remote, excludes=("*.tmp",))
    listing = shell.run(f"cd '{remote}' && find . -type f | sort").stdout.split()
    assert listing == ["./a.txt", "./sub/b.log"]
    shell.run(f"echo result > '{remote}/sub/metrics.log'")
    back = tmp_path / "back"
    shell.pull(remote, back, includes=("*.log",))
    assert sorted(str(p.relative_to(back)) for p in back.rglob("*") if p.is_file()) == [
        "sub/b.log", "sub/metrics.log"]
    assert (back / "sub" / "metrics.log").read_text() == "result\n"


def test_proxy_jump_through_a_jump_host(tmp_path: Path, sshd: Sshd, lab: Target) -> None:
    config = Path(str(lab.ssh_config))
    config.write_text(config.read_text() + f"""
Host jumpbox
  HostName 127.0.0.1
  Port {sshd.port}
  User root
  IdentityFile {sshd.key}
  UserKnownHostsFile {sshd.known_hosts}
Host behind
  HostName 127.0.0.1
  Port {sshd.port}
  User root
  IdentityFile {sshd.key}
  UserKnownHostsFile {sshd.known_hosts}
  ProxyJump jumpbox
""")
    shell = SshShell(replace(lab, hosts=("behind",)), "behind")
    try:
        assert shell.endpoint.proxy_jump == "jumpbox"
        assert shell.run("echo $SSH_CONNECTION").stdout.startswith("127.0.0.1 ")
        assert len(shell._opened) == 2  # the jump host's connection, then the target's
        source = tmp_path / "jumped"
        source.mkdir()
        (source / "x").write_text("via jump")
        shell.push(source, str(tmp_path / "jumped-dest"))
        assert (tmp_path / "jumped-dest" / "x").read_text() == "via jump"
    finally:
        shell.close()


def test_unreachable_port_is_a_remote_error_with_a_hint(lab: Target, sshd: Sshd) -> None:
    from services.ssh import free_port

    target = replace(lab, port=free_port())
    with pytest.raises(RemoteError) as caught:
        SshShell(target, "lab-box").run("true")
    assert "cannot connect to root@127.0.0.1:" in str(caught.value)
    assert caught.value.hint is not None and "ssh -F" in caught.value.hint


def test_resolve_host_uses_the_sshd_fixture_config(sshd: Sshd) -> None:
    target = Target(name="t", backend="ssh", hosts=(sshd.alias,), ssh_config=str(sshd.ssh_config))
    endpoint = resolve_host(sshd.alias, target)
    assert (endpoint.hostname, endpoint.port, endpoint.user) == ("127.0.0.1", sshd.port, "root")
    assert str(sshd.known_hosts) in endpoint.known_hosts


# --- expdeploy targets ------------------------------------------------------------------------

@pytest.fixture
def project(tmp_path: Path, sshd: Sshd, lab: Target, monkeypatch: pytest.MonkeyPatch) -> Path:
    monkeypatch.setenv("XDG_CONFIG_HOME", str(tmp_path / "xdg"))
    (tmp_path / "expdeploy.toml").write_text(f"""
[targets.lab]
backend = "ssh"
host = "lab-box"
ssh_config = "{lab.ssh_config}"
workdir = "{tmp_path}"
gpus = 2
[targets.lab.env]
EXP_VALUE = "x"

[targets.nowhere]
backend = "ssh"
host = "lab-box"
ssh_config = "{lab.ssh_config}"
workdir = "/does/not/exist"
""")
    return tmp_path


def test_targets_list(cli: Callable[..., Any], project: Path) -> None:
    result = cli("targets", "list", "--format", "json")
    assert result.exit_code == 0, result.output
    listed = json.loads(result.stdout)["targets"]
    assert [(t["name"], t["backend"], t["hosts"]) for t in listed] == [
        ("lab", "ssh", ["lab-box"]), ("nowhere", "ssh", ["lab-box"])]
    assert listed[0]["where"] == f"{project / 'expdeploy.toml'}:2"
    table = cli("targets", "list")
    assert table.exit_code == 0 and "lab-box" in table.stdout and "nowhere" in table.stdout


def test_targets_show(cli: Callable[..., Any], project: Path, sshd: Sshd) -> None:
    result = cli("targets", "show", "lab")
    assert result.exit_code == 0, result.output
    assert "env.EXP_VALUE" in result.stdout and "gpus" in result.stdout
    assert f"ssh lab-box resolves to root@127.0.0.1:{sshd.port}" in result.stdout
    shown = json.loads(cli("targets", "show", "lab", "--format", "json").stdout)
    assert shown["endpoints"]["lab-box"]["port"] == sshd.port
    assert shown["env.EXP_VALUE"] == "x"


def test_targets_check_ok_and_failing(cli: Callable[..., Any], project: Path) -> None:
    ok = cli("targets", "check", "lab")
    assert ok.exit_code == 0, ok.output
    lines = ok.stdout.strip().splitlines()
    assert [line.split()[0] for line in lines] == ["ok", "ok"]
    assert "connect" in lines[0] and "workdir" in lines[1]
    failing = cli("targets", "check", "nowhere", "--format", "json")
    assert failing.exit_code == 1, failing.output
    checks = json.loads(failing.stdout)["checks"]
    assert [(c["check"], c["ok"]) for c in checks] == [("connect", True), ("workdir", False)]


def test_targets_check_unknown_host_key_fails(cli: Callable[..., Any], project: Path, tmp_path: Path,
                                              sshd: Sshd) -> None:
    known = tmp_path / "none_known"
    known.write_text("")
    config = write_config(tmp_path / "strict", sshd, known)
    (project / "expdeploy.toml").write_text(
        f'[targets.strict]\nbackend = "ssh"\nhost = "lab-box"\nssh_config = "{config}"\n')
    result = cli("targets", "check", "strict")
    assert result.exit_code == 1
    assert result.stdout.startswith("FAIL") and "unknown host key" in result.stdout


def test_targets_bad_toml_exits_2(cli: Callable[..., Any], project: Path) -> None:
    (project / "expdeploy.toml").write_text('[targets.lab]\nbackend = "ssh"\nprot = 22\n')
    for args in (("list",), ("show", "lab"), ("check", "lab")):
        result = cli("targets", *args)
        assert result.exit_code == 2, result.output
        where = f"{project / 'expdeploy.toml'}:3"
        assert result.stderr.startswith(f"error: {where}: targets.lab.prot: unknown key")
        assert "did you mean `port`?" in result.stderr


def test_targets_unknown_name_exits_2(cli: Callable[..., Any], project: Path) -> None:
    result = cli("targets", "show", "lba")
    assert result.exit_code == 2
    assert "no target named 'lba'" in result.stderr and "known targets: lab, nowhere" in result.stderr
