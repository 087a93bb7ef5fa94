"""Commands and files on the machine a target names: this one (`LocalShell`) or an SSH host
(`SshShell`, through fabric, host aliases resolved by OpenSSH's `ssh -G`, host keys verified).
"""

from __future__ import annotations

import base64
import getpass
import hashlib
import io
import logging
import os
import re
import shlex
import subprocess
import tempfile
from abc import ABC, abstractmethod
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import TYPE_CHECKING, Any

from expdeploy.errors import ExpdeployError

if TYPE_CHECKING:
    from expdeploy.targets import Target

log = logging.getLogger(__name__)
CONNECT_TIMEOUT = 10  # seconds, unless the ssh config sets ConnectTimeout
MAX_JUMPS = 8


class RemoteError(ExpdeployError):
    """A target could not be reached or refused us (connection, authentication, host key)."""


@dataclass(frozen=True, slots=True)
class Completed:
    code: int
    stdout: str
    stderr: str


def env_prefix(env: Mapping[str, str]) -> str:
    """`export K=V; ` for each variable, values shell-quoted (sshd drops most sent variables)."""
    return "".join(f"export {k}={shlex.quote(v)}; " for k, v in env.items())


class Shell(ABC):
    """Runs POSIX sh command lines and copies directories on one machine."""

    label: str  # for messages: "this machine", "root@127.0.0.1:2222"

    @abstractmethod
    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = 120) -> Completed:
        """Run `command` with sh; a non-zero exit is returned, not raised (RemoteError is for
        not reaching the machine at all)."""

    @abstractmethod
    def push(self, local: Path, remote: str, *, excludes: Sequence[str] = ()) -> None:
        """Make directory `remote` hold the contents of `local` (rsync -a, incremental)."""

    @abstractmethod
    def pull(self, remote: str, local: Path, *, includes: Sequence[str] = ()) -> None:
        """Copy files from directory `remote` into `local` (only `includes` patterns if given)."""

    def close(self) -> None:  # noqa: B027 - optional
        """Drop connections."""


class LocalShell(Shell):
    """This machine: the login node is where expdeploy runs."""

    label = "this machine"

    def __init__(self, env: Mapping[str, str] | None = None) -> None:
        self.env = dict(env or {})

    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = 120) -> Completed:
        done = subprocess.run(["/bin/sh", "-c", env_prefix(self.env) + command], input=stdin,
                              capture_output=True, text=True, timeout=timeout, check=False)
        return Completed(done.returncode, done.stdout, done.stderr)

    def push(self, local: Path, remote: str, *, excludes: Sequence[str] = ()) -> None:
        if Path(remote).resolve() == local.resolve():
            return
        _rsync([*(f"--exclude={e}" for e in excludes), f"{local}/", f"{remote}/"])

    def pull(self, remote: str, local: Path, *, includes: Sequence[str] = ()) -> None:
        if Path(remote).resolve() == local.resolve():
            return
        _rsync([*_include_args(includes), f"{remote}/", f"{local}/"])


def _include_args(includes: Sequence[str]) -> list[str]:
    if not includes:
        return []
    return ["--include=*/", *(f"--include={i}" for i in includes), "--exclude=*", "--prune-empty-dirs"]


def _rsync(args: list[str], ssh: str | None = None) -> None:
    command = ["rsync", "-a", *(["-e", ssh] if ssh else []), *args]
    done = subprocess.run(command, capture_output=True, text=True, check=False)
    if done.returncode:
        raise RemoteError(f"rsync failed ({done.returncode}): {done.stderr.strip()[-300:]}",
                          hint="is rsync installed on both sides, and the path writable?")


# --- SSH hosts --------------------------------------------------------------------------------

@dataclass(frozen=True, slots=True)
class SshEndpoint:
    """An ssh destination as OpenSSH resolves it (`ssh -G`): Include, Host patterns, Match, defaults."""

    alias: str  # what the user wrote: an ssh_config Host alias or a host name
    hostname: str
    port: int
    user: str
    identity_files: tuple[str, ...]
    known_hosts: tuple[str, ...]  # user files first (a new key is added to the first), then global
    proxy_jump: str | None
    strict: str  # StrictHostKeyChecking as configured (expdeploy always checks; see accept_unknown_host_keys)
    proxy_command: str | None = None
    identities_only: bool = False
    connect_timeout: int | None = None
    host_key_alias: str | None = None

    @property
    def label(self) -> str:
        return f"{self.user}@{self.hostname}:{self.port}"

    @property
    def host_key_name(self) -> str:
        """The name its key has in known_hosts: `host`, or `[host]:port` off port 22."""
        name = self.host_key_alias or self.hostname
        return name if self.port == 22 else f"[{name}]:{self.port}"


def ssh_options(target: Target) -> list[str]:
    """The `ssh` options a target sets: `-F`, `-p`, `-l`, `-i` (the same for `ssh -G` and for rsync)."""
    options = ["-F", target.ssh_config] if target.ssh_config else []
    if target.port:
        options += ["-p", str(target.port)]
    if target.user:
        options += ["-l", target.user]
    if target.identity_file:
        options += ["-i", target.identity_file]
    return options


def resolve_host(alias: str, target: Target) -> SshEndpoint:
    """Ask OpenSSH what `ssh ALIAS` would connect to with this target's options; keep identity
    files that exist (ssh skips missing ones silently, and lists its defaults)."""
    return _resolve([*ssh_options(target), alias], alias)


def _resolve(args: list[str], alias: str) -> SshEndpoint:
    endpoint = parse_ssh_g(_ssh_g(args, alias), alias)
    return replace(endpoint, identity_files=tuple(p for p in endpoint.identity_files if os.path.isfile(p)))


def _ssh_g(args: list[str], alias: str) -> str:
    try:
        done = subprocess.run(["ssh", "-G", *args], capture_output=True, text=True, timeout=30,
                              stdin=subprocess.DEVNULL, check=False)
    except FileNotFoundError:
        raise RemoteError("`ssh` is not installed: it resolves host aliases",
                          hint="install the OpenSSH client (Debian: openssh-client)") from None
    if done.returncode:
        problem = done.stderr.strip().splitlines()[-1:] or [f"exit status {done.returncode}"]
        raise RemoteError(f"ssh cannot resolve host {alias!r}: {problem[0]}",
                          hint=f"try it by hand: {shlex.join(['ssh', '-G', *args])}")
    return done.stdout


def parse_ssh_g(text: str, alias: str) -> SshEndpoint:
    """An endpoint from `ssh -G` output (one lower-case `key value` per line); tokens such as
    `%d` and `%r`, which `-G` prints unexpanded in some options, are expanded here."""
    values: dict[str, list[str]] = {}
    for line in text.splitlines():
        key, _, value = line.strip().partition(" ")
        if key:
            values.setdefault(key.lower(), []).append(value.strip())

    def one(key: str, default: str = "") -> str:
        return values.get(key, [default])[0]

    hostname, user, port = one("hostname", alias), one("user", getpass.getuser()), int(one("port", "22"))
    tokens = {"%": "%", "d": str(Path.home()), "u": getpass.getuser(), "r": user, "h": hostname,
              "p": str(port), "n": alias, "i": str(os.getuid())}

    def path(raw: str) -> str:
        return os.path.expanduser(_expand_tokens(raw, tokens))

    known = [*one("userknownhostsfile").split(), *one("globalknownhostsfile").split()]
    timeout = one("connecttimeout", "none")
    return SshEndpoint(
        alias=alias, hostname=hostname, port=port, user=user,
        identity_files=tuple(path(p) for p in values.get("identityfile", [])),
        known_hosts=tuple(path(p) for p in known if p != "none"),
        proxy_jump=_unless_none(one("proxyjump", "none")),
        strict=one("stricthostkeychecking", "ask"),
        proxy_command=_unless_none(_expand_tokens(one("proxycommand", "none"), tokens)),
        identities_only=one("identitiesonly", "no") == "yes",
        connect_timeout=int(timeout) if timeout.isdigit() else None,
        host_key_alias=_unless_none(one("hostkeyalias", "none")),
    )


def _expand_tokens(text: str, tokens: Mapping[str, str]) -> str:
    return re.sub(r"%(.)", lambda m: tokens.get(m.group(1), m.group(0)), text)


def _unless_none(value: str) -> str | None:
    return None if value in ("", "none") else value


def _jump_args(hop: str) -> tuple[list[str], str]:
    """`ssh -G` options and host for one ProxyJump hop: `[user@]host[:port]` or `ssh://...`."""
    hop = hop.removeprefix("ssh://")
    user, _, hostport = hop.rpartition("@")
    host, port = hostport, ""
    if hostport.startswith("["):
        host, _, rest = hostport[1:].partition("]")
        port = rest.removeprefix(":")
    elif hostport.count(":") == 1:
        host, _, port = hostport.partition(":")
    return [*(["-l", user] if user else []), *(["-p", port] if port else [])], host


def fingerprint(key_bytes: bytes) -> str:
    """OpenSSH's SHA256 fingerprint of a public key blob."""
    return "SHA256:" + base64.b64encode(hashlib.sha256(key_bytes).digest()).decode().rstrip("=")


class _UnknownHostKey(Exception):
    def __init__(self, endpoint: SshEndpoint, key_type: str, key_fingerprint: str) -> None:
        super().__init__(endpoint.host_key_name)
        self.endpoint, self.key_type, self.fingerprint = endpoint, key_type, key_fingerprint


class _HostKeyPolicy:
    """paramiko's missing-host-key hook: refuse, or accept and remember (never write a file)."""

    def __init__(self, endpoint: SshEndpoint, accept: bool, accepted: list[str]) -> None:
        self.endpoint, self.accept, self.accepted = endpoint, accept, accepted

    def missing_host_key(self, client: Any, hostname: str, key: Any) -> None:
        found = fingerprint(key.asbytes())
        if not self.accept:
            raise _UnknownHostKey(self.endpoint, key.get_name(), found)
        log.warning("accepting unknown %s host key %s of %s (accept_unknown_host_keys = true)",
                    key.get_name(), found, self.endpoint.label)
        self.accepted.append(f"{self.endpoint.host_key_name} {key.get_name()} {key.get_base64()}")


class SshShell(Shell):
    """One SSH host: commands through fabric (one connection, reused), files through rsync over
    OpenSSH; both verify the host key against the known_hosts files ssh_config names."""

    def __init__(self, target: Target, host: str, *, endpoint: SshEndpoint | None = None) -> None:
        self.target = target
        self.alias = host
        self.endpoint = endpoint or resolve_host(host, target)
        self.label = self.endpoint.label
        self._opened: list[tuple[SshEndpoint, Any]] = []  # fabric Connections; the target's last
        self._key_files: dict[str, str] = {}  # known_hosts name -> the file its pinned key came from
        self._accepted: list[str] = []  # known_hosts lines accepted on trust (accept_unknown_host_keys)
        self._scratch: tempfile.TemporaryDirectory[str] | None = None

    # commands ----------------------------------------------------------------------------------
    def run(self, command: str, *, stdin: str | None = None, timeout: float | None = 120) -> Completed:
        import paramiko  # type: ignore[import-untyped]
        from invoke.exceptions import CommandTimedOut, ThreadException

        connection = self._open()
        wrapped = "sh -c " + shlex.quote(env_prefix(self.target.env) + command)
        try:
            result = connection.run(wrapped, hide=True, warn=True, pty=False, timeout=timeout,
                                    in_stream=io.StringIO(stdin or ""))
        except CommandTimedOut:
            raise RemoteError(f"{self.label}: command timed out after {timeout} s: {command[:80]}",
                              hint="the host or its file system may be overloaded") from None
        except (ThreadException, paramiko.SSHException, OSError, EOFError) as exc:
            self.close()
            raise RemoteError(f"{self.label}: lost the connection: {exc}",
                              hint="the next command reconnects; check the network if it persists") from None
        return Completed(result.exited, result.stdout, result.stderr)

    # files -------------------------------------------------------------------------------------
    def push(self, local: Path, remote: str, *, excludes: Sequence[str] = ()) -> None:
        # mkdir -p rather than rsync --mkpath: a login node's rsync may predate 3.2.3
        made = self.run(f"mkdir -p {shlex.quote(remote)}")
        if made.code:
            raise RemoteError(f"{self.label}: cannot create {remote}: {made.stderr.strip()[-300:]}")
        _rsync([*(f"--exclude={e}" for e in excludes), f"{local}/", self._rsync_path(remote)],
               ssh=shlex.join(self.ssh_command()))

    def pull(self, remote: str, local: Path, *, includes: Sequence[str] = ()) -> None:
        self._open()  # one clear error for an unreachable host or a bad host key, before rsync's
        local.mkdir(parents=True, exist_ok=True)
        _rsync([*_include_args(includes), self._rsync_path(remote), f"{local}/"],
               ssh=shlex.join(self.ssh_command()))

    def ssh_command(self) -> list[str]:
        """The OpenSSH command rsync uses: this target's options, host key checking forced on."""
        command = ["ssh", *ssh_options(self.target), "-o", "BatchMode=yes", "-o", "StrictHostKeyChecking=yes"]
        if self._accepted:
            files = [self._accepted_file(), *self.endpoint.known_hosts]
            command += ["-o", "UserKnownHostsFile=" + " ".join(f'"{f}"' if " " in f else f for f in files)]
        return command

    def _rsync_path(self, remote: str) -> str:
        host = f"[{self.alias}]" if ":" in self.alias else self.alias
        return f"{host}:{remote.rstrip('/')}/"

    def _accepted_file(self) -> str:
        """A private known_hosts holding the keys accepted on trust, so rsync's ssh checks for the
        very key fabric saw (not whichever key answers next)."""
        if self._scratch is None:
            self._scratch = tempfile.TemporaryDirectory(prefix="expdeploy-ssh-")
        path = Path(self._scratch.name) / "known_hosts"
        path.write_text("".join(f"{line}\n" for line in self._accepted))
        return str(path)

    def close(self) -> None:
        for _, connection in reversed(self._opened):
            connection.close()
        self._opened = []
        if self._scratch is not None:
            self._scratch.cleanup()
            self._scratch = None

    # connections -------------------------------------------------------------------------------
    def _open(self) -> Any:
        if self._opened:
            return self._opened[-1][1]
        import paramiko

        try:
            connection = self._connect(self.endpoint, 0)
            connection.open()
        except (RemoteError, _UnknownHostKey, paramiko.SSHException, OSError, EOFError) as exc:
            error = self._connect_error(exc)
            self.close()
            raise error from None
        return connection

    def _connect(self, endpoint: SshEndpoint, depth: int, via: Any = None) -> Any:
        """A fabric Connection (not opened yet) to `endpoint`, through `via` or the endpoint's own
        ProxyJump / ProxyCommand."""
        import fabric  # type: ignore[import-untyped]
        import paramiko

        if via is None:
            via = self._gateway(endpoint, depth)
        timeout = endpoint.connect_timeout or CONNECT_TIMEOUT
        config = fabric.Config(ssh_config=paramiko.SSHConfig(),  # resolved already, by OpenSSH
                               overrides={"run": {"encoding": "utf-8"}})
        connection = fabric.Connection(
            host=endpoint.hostname, user=endpoint.user, port=endpoint.port, config=config,
            gateway=via, forward_agent=False, connect_timeout=timeout,
            connect_kwargs={"key_filename": list(endpoint.identity_files),
                            "look_for_keys": not endpoint.identity_files,
                            "allow_agent": not endpoint.identities_only,
                            "banner_timeout": timeout, "auth_timeout": timeout},
        )
        self._pin_host_keys(connection.client, endpoint)
        self._opened.append((endpoint, connection))
        return connection

    def _gateway(self, endpoint: SshEndpoint, depth: int) -> Any:
        """The Connection to the last ProxyJump hop (each hop reached through the one before it),
        or a ProxyCommand string, or None."""
        if not endpoint.proxy_jump:
            return endpoint.proxy_command
        if depth >= MAX_JUMPS:
            raise RemoteError(f"more than {MAX_JUMPS} ProxyJump hops to reach {self.endpoint.label}",
                              hint="does the ssh config give the jump host a ProxyJump to itself?")
        config = ["-F", self.target.ssh_config] if self.target.ssh_config else []
        gateway = None
        for hop in endpoint.proxy_jump.split(","):
            args, host = _jump_args(hop)
            gateway = self._connect(_resolve([*config, *args, host], host), depth + 1, via=gateway)
        return gateway

    def _pin_host_keys(self, client: Any, endpoint: SshEndpoint) -> None:
        """Trust exactly the keys known_hosts holds for this endpoint (under the name paramiko looks
        up); any other key goes to the policy, which refuses unless the target opts out."""
        import paramiko

        paramiko_name = endpoint.hostname if endpoint.port == 22 else f"[{endpoint.hostname}]:{endpoint.port}"
        pinned = client.get_host_keys()
        for path in endpoint.known_hosts:
            if not os.path.isfile(path):
                continue
            try:
                found = paramiko.HostKeys(path).lookup(endpoint.host_key_name) or {}
            except (OSError, paramiko.SSHException, ValueError) as exc:
                log.warning("skipping unreadable known_hosts file %s: %s", path, exc)
                continue
            for key_type, key in found.items():
                if key_type not in (pinned.lookup(paramiko_name) or {}):  # the first file wins, as in ssh
                    pinned.add(paramiko_name, key_type, key)
                    self._key_files.setdefault(endpoint.host_key_name, path)
        client.set_missing_host_key_policy(
            _HostKeyPolicy(endpoint, self.target.accept_unknown_host_keys, self._accepted))

    def _connect_error(self, exc: Exception) -> RemoteError:
        import paramiko

        if isinstance(exc, RemoteError):
            return exc
        if isinstance(exc, _UnknownHostKey):
            return _unknown_key_error(exc, self.target.name)
        if isinstance(exc, paramiko.BadHostKeyException):
            return self._changed_key_error(exc)
        where = self.label if self.alias == self.endpoint.hostname else f"{self.label} ({self.alias})"
        retry = shlex.join(["ssh", *ssh_options(self.target), self.alias, "true"])
        if isinstance(exc, paramiko.AuthenticationException):
            return RemoteError(f"{where}: authentication failed: {exc}",
                               hint="expdeploy uses keys only, never passwords: check identity_file "
                               f"or your ssh agent; try: {retry}")
        reason = re.sub(r"^\[Errno [^]]*\] ", "", str(exc)) or type(exc).__name__
        return RemoteError(f"cannot connect to {where}: {reason}",
                           hint=f"is the host up and the port right? try: {retry}")

    def _changed_key_error(self, exc: Any) -> RemoteError:
        endpoint = next((e for e, c in reversed(self._opened) if c.host == exc.hostname), self.endpoint)
        source = self._key_files.get(endpoint.host_key_name, " ".join(endpoint.known_hosts))
        return RemoteError(
            f"host key of {endpoint.label} does not match {endpoint.host_key_name} in {source}: "
            f"got {exc.key.get_name()} {fingerprint(exc.key.asbytes())}",
            hint="someone may be intercepting the connection; if the host was reinstalled, check the new "
            f"fingerprint, then: ssh-keygen -R '{endpoint.host_key_name}' -f {source}")


def _unknown_key_error(exc: _UnknownHostKey, target_name: str) -> RemoteError:
    endpoint = exc.endpoint
    file = endpoint.known_hosts[0] if endpoint.known_hosts else "~/.ssh/known_hosts"
    host = f"-p {endpoint.port} {endpoint.hostname}" if endpoint.port != 22 else endpoint.hostname
    return RemoteError(
        f"unknown host key for {endpoint.label}: {endpoint.host_key_name} is not in {file}"
        f" ({exc.key_type} {exc.fingerprint})",
        hint=f"check that fingerprint with the host's admin, then: ssh-keyscan -t {exc.key_type} {host} >> "
        f"{file}; or set accept_unknown_host_keys = true in [targets.{target_name}]")


def shell_for(target: Target, host: str | None = None) -> Shell:
    """This machine for a target without hosts; else an SSH shell to `host` (default: the first)."""
    if not target.hosts:
        return LocalShell(target.env)
    return SshShell(target, host or target.hosts[0])
