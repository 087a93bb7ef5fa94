"""Named targets: the TOML format, project-over-user precedence, located errors with hints, and
how `ssh -G` output becomes an SshEndpoint."""

from __future__ import annotations

import shutil
import textwrap
from pathlib import Path

import pytest

from expdeploy.errors import BadInput
from expdeploy.remote import LocalShell, SshEndpoint, _jump_args, parse_ssh_g, resolve_host, shell_for
from expdeploy.targets import SlurmSettings, Target, get_target, load_targets, read_targets_file

FULL = """
# a comment
[targets.atlas]
backend = "slurm"
host = "atlas"
user = "me"
port = 2200
identity_file = "keys/id_ed25519"
ssh_config = "ssh/config"
workdir = "/work/me/proj"
sync = ["code", "env"]
accept_unknown_host_keys = false

[targets.atlas.env]
SLURM_CONF = "/etc/slurm/slurm.conf"

[targets.atlas.slurm]
partition = "gpu"
account = "proj"
qos = "normal"
constraint = "a100"
sbatch = ["--exclusive"]
setup = ["module load cuda/12.1"]
header = "slurm/header.sh"
gpu_option = "gpus-per-task"

[targets.boxes]
backend = "ssh"
hosts = ["gpu1", "gpu2"]
gpus = 4
"""


def write(directory: Path, text: str, name: str = "expdeploy.toml") -> Path:
    path = directory / name
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(textwrap.dedent(text).lstrip("\n"))
    return path


@pytest.fixture(autouse=True)
def no_user_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> Path:
    """Point the user file at an empty config home, so the real ~/.config is never read."""
    home = tmp_path / "xdg"
    monkeypatch.setenv("XDG_CONFIG_HOME", str(home))
    return home


def test_every_setting_is_read(tmp_path: Path) -> None:
    path = write(tmp_path, FULL)
    targets = load_targets(tmp_path)
    assert list(targets) == ["atlas", "boxes"]
    atlas = targets["atlas"]
    assert atlas == Target(
        name="atlas", backend="slurm", hosts=("atlas",), user="me", port=2200,
        identity_file=str(tmp_path / "keys/id_ed25519"), ssh_config=str(tmp_path / "ssh/config"),
        workdir="/work/me/proj", sync=("code", "env"), env={"SLURM_CONF": "/etc/slurm/slurm.conf"},
        slurm=SlurmSettings(partition="gpu", account="proj", qos="normal", constraint="a100",
                            sbatch=("--exclusive",), setup=("module load cuda/12.1",),
                            header=str(tmp_path / "slurm/header.sh"), gpu_option="gpus-per-task"),
        where=atlas.where,
    )
    assert str(atlas.where) == f"{path}:2"
    assert atlas.remote
    boxes = targets["boxes"]
    assert (boxes.hosts, boxes.gpus, boxes.sync) == (("gpu1", "gpu2"), 4, ("code",))
    assert boxes.slurm == SlurmSettings()
    assert str(boxes.where) == f"{path}:26"


def test_defaults_and_this_machine(tmp_path: Path) -> None:
    write(tmp_path, '[targets.here]\nbackend = "ssh"\nslots = 8\n')
    here = load_targets(tmp_path)["here"]
    assert (here.hosts, here.remote, here.slots, here.workdir, here.accept_unknown_host_keys) == (
        (), False, 8, None, False)
    assert here.slurm.gpu_option == "gres"
    shell = shell_for(here)
    assert isinstance(shell, LocalShell)
    assert shell.run("echo hi").stdout == "hi\n"


def test_tilde_is_expanded(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path, '[targets.t]\nbackend = "ssh"\nhost = "h"\nidentity_file = "~/.ssh/id"\n')
    assert load_targets(tmp_path)["t"].identity_file == str(tmp_path / "home/.ssh/id")


def test_inline_and_dotted_forms(tmp_path: Path) -> None:
    write(tmp_path, """
        [targets]
        a = { backend = "ssh", host = "x" }
        b.backend = "slurm"
        b.slurm.partition = "p"
    """)
    targets = load_targets(tmp_path)
    assert targets["a"].hosts == ("x",)
    assert targets["b"].slurm.partition == "p"
    assert targets["b"].where is not None and targets["b"].where.line == 3


def test_project_file_wins_over_user_file(tmp_path: Path, no_user_file: Path) -> None:
    user = write(no_user_file, """
        [targets.atlas]
        backend = "ssh"
        host = "from-user"
        [targets.mine]
        backend = "ssh"
        host = "only-user"
    """, "expdeploy/targets.toml")
    project = write(tmp_path / "proj", '[targets.atlas]\nbackend = "slurm"\nhost = "from-project"\n')
    targets = load_targets(project.parent)
    assert targets["atlas"].hosts == ("from-project",)
    assert targets["atlas"].backend == "slurm"
    assert targets["atlas"].where is not None and targets["atlas"].where.path == str(project)
    assert targets["mine"].hosts == ("only-user",)
    assert targets["mine"].where is not None and targets["mine"].where.path == str(user)


def test_explicit_user_file_and_home_default(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    other = write(tmp_path, '[targets.o]\nbackend = "ssh"\n', "other.toml")
    assert list(load_targets(tmp_path / "nowhere", other)) == ["o"]
    monkeypatch.delenv("XDG_CONFIG_HOME")
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path / "home/.config/expdeploy", '[targets.h]\nbackend = "ssh"\n', "targets.toml")
    assert list(load_targets(tmp_path / "nowhere")) == ["h"]


def test_project_file_leaves_other_tables_alone(tmp_path: Path) -> None:
    write(tmp_path, '[defaults]\nbackend = "local"\n[targets.t]\nbackend = "ssh"\n')
    assert list(load_targets(tmp_path)) == ["t"]


def test_unknown_target_lists_the_known_ones(tmp_path: Path) -> None:
    write(tmp_path, FULL)
    with pytest.raises(BadInput) as caught:
        get_target("atlsa", tmp_path)
    assert "no target named 'atlsa'" in str(caught.value)
    assert caught.value.hint == "did you mean `atlas`? known targets: atlas, boxes"
    assert get_target("boxes", tmp_path).name == "boxes"


def test_no_targets_at_all_says_where_to_define_one(tmp_path: Path) -> None:
    with pytest.raises(BadInput) as caught:
        get_target("atlas", tmp_path)
    assert caught.value.hint is not None
    assert "[targets.atlas]" in caught.value.hint and "expdeploy.toml" in caught.value.hint


BAD = [
    # (file text, line, key, words in the message, words in the hint)
    ('[targets.a]\nbackend = "ssh"\nprot = 22\n', 3, "targets.a.prot", "unknown key", "`port`"),
    ('[targets.a]\nbackend = "slurm"\n[targets.a.slurm]\npartiton = "gpu"\n', 4,
     "targets.a.slurm.partiton", "unknown key", "`partition`"),
    ('[targets.a]\nbackend = "ssh"\nport = "22"\n', 3, "targets.a.port", "expected an integer", None),
    ('[targets.a]\nbackend = "ssh"\nport = 70000\n', 3, "targets.a.port", "between 1 and 65535", None),
    ('[targets.a]\nbackend = "slrum"\n', 2, "targets.a.backend", "unknown backend 'slrum'", "'slurm'"),
    ('[targets.a]\nhost = "x"\n', 1, "targets.a", "`backend` is missing", 'backend = "slurm"'),
    ('[targets.a]\nbackend = "ssh"\nhost = \n', 3, None, "not valid TOML: Invalid value", "toml.io"),
    ('[targets.a]\nbackend = "ssh"\n[targets.a.env]\nN = 3\n', 4, "targets.a.env.N", "expected a string",
     'N = "3"'),
    ('[targets.a]\nbackend = "ssh"\n[targets.a.env]\n"A-B" = "x"\n', 4, "targets.a.env.A-B",
     "not a valid environment variable name", None),
    ('[targets.a]\nbackend = "ssh"\nhost = "x"\nhosts = ["y"]\n', 4, "targets.a.hosts", "not both", None),
    ('[targets.a]\nbackend = "ssh"\nhosts = []\n', 3, "targets.a.hosts", "is empty", None),
    ('[targets.a]\nbackend = "slurm"\nhosts = ["x", "y"]\n', 3, "targets.a.hosts", "one login node", None),
    ('[targets.a]\nbackend = "ssh"\ngpus = 2\nslots = 4\n', 4, "targets.a.slots", "either `gpus`", None),
    ('[targets.a]\nbackend = "ssh"\ngpus = -1\n', 3, "targets.a.gpus", "integer >= 0", None),
    ('[targets.a]\nbackend = "ssh"\nsync = ["cod"]\n', 3, "targets.a.sync", "unknown sync 'cod'", "'code'"),
    ('[targets.a]\nbackend = "ssh"\nsync = "code"\n', 3, "targets.a.sync", "a list of strings", None),
    ('[targets.a]\nbackend = "ssh"\nworkdir = "proj"\n', 3, "targets.a.workdir", "absolute path", None),
    ('[targets.a]\nbackend = "ssh"\naccept_unknown_host_keys = "yes"\n', 3,
     "targets.a.accept_unknown_host_keys", "true or false", None),
    ('[targets.a]\nbackend = "slurm"\n[targets.a.slurm]\ngpu_option = "gpu"\n', 4,
     "targets.a.slurm.gpu_option", "unknown gpu_option", "one of: gres, gpus-per-task"),
    ('[targets.a]\nbackend = "slurm"\nslurm = "gpu"\n', 3, "targets.a.slurm", "expected a table", None),
    ('[targets]\na = 3\n', 2, "targets.a", "expected a table, got an integer", "[targets.a]"),
    ('targets = 3\n', 1, "targets", "expected a table", None),
    ('[targets]\na = { backend = "ssh", prot = 1 }\n', 2, "targets.a.prot", "unknown key", "`port`"),
    ('[targets."a b"]\nbackend = "ssh"\n', 1, "targets.a b", "not a usable target name", None),
    ('[targets.a]\nbackend = "ssh"\nworkdir = """\nprot = 1\n"""\nprot = 2\n', 6, "targets.a.prot",
     "unknown key", None),
    ('[targets.a]\nbackend = "ssh"\nimages = ["x.img"]\n', 3, "targets.a.images", "expected .sif files",
     "docker_images"),
    ('[targets.a]\nbackend = "ssh"\nimages = "x.sif"\n', 3, "targets.a.images", "a list of strings", None),
    ('[targets.a]\nbackend = "ssh"\npaths = [""]\n', 3, "targets.a.paths", "non-empty paths", None),
    ('[targets.a]\nbackend = "ssh"\ndocker_images = ["my image"]\n', 3, "targets.a.docker_images",
     "not a Docker image name", "name[:tag]"),
    ('[targets.a]\nbackend = "ssh"\nenvironment = 3\n', 3, "targets.a.environment", "a non-empty string",
     None),
    ('[targets.a]\nbackend = "ssh"\nsync = ["code", "images"]\n', 3, "targets.a.sync",
     "lists 'images' but `images` is not set", "images = [...]"),
    ('[targets.a]\nbackend = "ssh"\nsync = ["dockr"]\n', 3, "targets.a.sync", "unknown sync 'dockr'",
     "'docker'"),
    ('[targets.a]\nbackend = "ssh"\npath_map = "/a"\n', 3, "targets.a.path_map", "expected a table",
     '"/local/prefix" = "/remote/prefix"'),
    ('[targets.a]\nbackend = "ssh"\n[targets.a.path_map]\n"/a" = "b"\n', 4, "targets.a.path_map./a",
     "expected an absolute remote path, got 'b'", None),
    ('[targets.a]\nbackend = "ssh"\n[targets.a.path_map]\n"/a" = "/b"\n"rel" = "/c"\n', 5,
     "targets.a.path_map.rel", "expected an absolute local path", None),
]


@pytest.mark.parametrize(("text", "line", "key", "message", "hint"), BAD)
def test_bad_input_names_file_line_key_and_hint(
    tmp_path: Path, text: str, line: int, key: str | None, message: str, hint: str | None
) -> None:
    path = write(tmp_path, text)
    with pytest.raises(BadInput) as caught:
        load_targets(tmp_path)
    error = caught.value
    assert error.where is not None
    assert (error.where.path, error.where.line) == (str(path), line), str(error)
    assert error.key == key
    assert message in error.message
    if hint:
        assert error.hint is not None and hint in error.hint, error.hint
    assert str(error).startswith(f"{path}:{line}: ")
    assert "\n" not in str(error)


def test_sync_settings_are_read(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", str(tmp_path / "home"))
    write(tmp_path, """
        [targets.t]
        backend = "ssh"
        host = "h"
        environment = ".venv/"
        images = ["images/app.sif", "/abs/other.sif"]
        docker_images = ["pytorch/pytorch:2.3", "registry.example.org:5000/x@sha256:ab"]
        paths = ["data/../data", "~/shared"]
        [targets.t.path_map]
        "~/proj" = "/work/me/proj/"
        "/opt" = "/scratch/opt"
    """)
    target = load_targets(tmp_path)["t"]
    assert target.environment == str(tmp_path / ".venv")
    assert target.images == (str(tmp_path / "images/app.sif"), "/abs/other.sif")
    assert target.docker_images == ("pytorch/pytorch:2.3", "registry.example.org:5000/x@sha256:ab")
    assert target.paths == (str(tmp_path / "data"), str(tmp_path / "home/shared"))
    assert target.path_map == {str(tmp_path / "home/proj"): "/work/me/proj", "/opt": "/scratch/opt"}
    # without a `sync` list: the code, and every kind the settings name
    assert target.sync == ("code", "env", "images", "docker", "paths")


def test_sync_list_wins_and_env_needs_no_setting(tmp_path: Path) -> None:
    write(tmp_path, '[targets.t]\nbackend = "ssh"\nsync = ["env"]\n[targets.u]\nbackend = "ssh"\n'
          'images = ["a.sif"]\n')
    targets = load_targets(tmp_path)
    assert targets["t"].sync == ("env",)  # the active environment, at sync time
    assert targets["u"].sync == ("code", "images")
    assert targets["t"].environment is None and targets["t"].path_map == {}


@pytest.mark.parametrize(("local", "remote"), [
    ("/home/me/proj/.venv", "/work/me/proj/.venv"),
    ("/home/me", "/work/me"),
    ("/home/me/proj-other/x", "/work/me/proj-other/x"),
    ("/home/me2/x", "/home/me2/x"),  # a prefix matches whole path components only
    ("/home/me/deep/er/x", "/elsewhere/x"),  # the longest prefix wins
    ("/opt/x", "/opt/x"),
])
def test_remote_path_applies_the_longest_path_map_prefix(local: str, remote: str) -> None:
    target = Target(name="t", backend="ssh",
                    path_map={"/home/me": "/work/me", "/home/me/deep/er": "/elsewhere"})
    assert target.remote_path(local) == remote
    assert Target(name="t", backend="ssh").remote_path(local) == local
    assert Target(name="t", backend="ssh", path_map={"/": "/r"}).remote_path(local) == "/r" + local


def test_user_file_allows_only_targets(tmp_path: Path) -> None:
    path = write(tmp_path, '[target.a]\nbackend = "ssh"\n', "targets.toml")
    with pytest.raises(BadInput) as caught:
        read_targets_file(path)
    assert caught.value.where is not None and caught.value.where.line == 1
    assert caught.value.hint == "did you mean `targets`?"


def test_unterminated_string_at_end_of_document(tmp_path: Path) -> None:
    path = write(tmp_path, '[targets.a]\nbackend = "ssh\n')
    with pytest.raises(BadInput) as caught:
        load_targets(tmp_path)
    assert str(caught.value).startswith(f"{path}:")
    assert "not valid TOML" in caught.value.message


# --- ssh -G ------------------------------------------------------------------------------------

# Recorded from OpenSSH 9.2 (`ssh -G -F cfg box`), shortened: the options expdeploy reads, and others.
RECORDED = """\
host box
user alice
hostname 10.1.2.3
port 2200
addressfamily any
batchmode yes
identitiesonly yes
stricthostkeychecking true
connecttimeout 7
hostkeyalias none
identityfile %d/.ssh/id_%r
identityfile ~/.ssh/id_ed25519
canonicaldomains none
globalknownhostsfile /etc/ssh/ssh_known_hosts /etc/ssh/ssh_known_hosts2
userknownhostsfile /home/alice/.ssh/known_hosts /home/alice/.ssh/known_hosts2
proxyjump bob@bastion:2022,inner
"""


def test_parse_recorded_ssh_g_output(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("HOME", "/home/alice")
    endpoint = parse_ssh_g(RECORDED, "box")
    assert endpoint == SshEndpoint(
        alias="box", hostname="10.1.2.3", port=2200, user="alice",
        identity_files=("/home/alice/.ssh/id_alice", "/home/alice/.ssh/id_ed25519"),
        known_hosts=("/home/alice/.ssh/known_hosts", "/home/alice/.ssh/known_hosts2",
                     "/etc/ssh/ssh_known_hosts", "/etc/ssh/ssh_known_hosts2"),
        proxy_jump="bob@bastion:2022,inner", strict="true", proxy_command=None, identities_only=True,
        connect_timeout=7, host_key_alias=None,
    )
    assert endpoint.label == "alice@10.1.2.3:2200"
    assert endpoint.host_key_name == "[10.1.2.3]:2200"


def test_parse_defaults_and_proxy_command() -> None:
    endpoint = parse_ssh_g("hostname h\nport 22\nuser u\nproxycommand nc %h %p\nhostkeyalias other\n"
                           "connecttimeout none\n", "alias")
    assert endpoint.proxy_command == "nc h 22"
    assert endpoint.proxy_jump is None and endpoint.connect_timeout is None
    assert endpoint.host_key_name == "other"
    assert endpoint.strict == "ask"


@pytest.mark.parametrize(("hop", "args", "host"), [
    ("bastion", [], "bastion"),
    ("bob@bastion:2022", ["-l", "bob", "-p", "2022"], "bastion"),
    ("ssh://bob@bastion", ["-l", "bob"], "bastion"),
    ("[::1]:22", ["-p", "22"], "::1"),
])
def test_jump_hops(hop: str, args: list[str], host: str) -> None:
    assert _jump_args(hop) == (args, host)


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs the OpenSSH client")
def test_resolve_host_follows_include_like_ssh(tmp_path: Path) -> None:
    key = tmp_path / "id_test"
    key.write_text("not really a key\n")
    (tmp_path / "conf.d").mkdir()
    (tmp_path / "conf.d" / "lab.conf").write_text(
        f"Host lab-box\n  HostName 192.0.2.7\n  Port 2022\n  User carol\n  IdentityFile {key}\n"
        f"  UserKnownHostsFile {tmp_path}/kh\n  ProxyJump gate\n")
    config = tmp_path / "ssh_config"
    config.write_text(f"Include {tmp_path}/conf.d/*.conf\nHost *\n  IdentitiesOnly yes\n"
                      "  GlobalKnownHostsFile none\n")
    target = Target(name="lab", backend="ssh", hosts=("lab-box",), ssh_config=str(config))
    endpoint = resolve_host("lab-box", target)
    assert (endpoint.hostname, endpoint.port, endpoint.user) == ("192.0.2.7", 2022, "carol")
    assert endpoint.identity_files == (str(key),)  # ssh's missing default identities are dropped
    assert endpoint.known_hosts[0] == f"{tmp_path}/kh"
    assert endpoint.proxy_jump == "gate" and endpoint.identities_only
    # the target's own user and port win, as on ssh's command line
    overridden = resolve_host("lab-box", Target(name="lab", backend="ssh", hosts=("lab-box",),
                                                 ssh_config=str(config), user="dave", port=2300))
    assert (overridden.user, overridden.port) == ("dave", 2300)


@pytest.mark.skipif(not shutil.which("ssh"), reason="needs the OpenSSH client")
def test_resolve_host_reports_a_broken_config(tmp_path: Path) -> None:
    from expdeploy.remote import RemoteError

    config = tmp_path / "ssh_config"
    config.write_text("Host x\n  NoSuchOption yes\n")
    with pytest.raises(RemoteError) as caught:
        resolve_host("x", Target(name="t", backend="ssh", hosts=("x",), ssh_config=str(config)))
    assert "ssh cannot resolve host 'x'" in str(caught.value)
    assert caught.value.hint is not None and "ssh -G" in caught.value.hint
