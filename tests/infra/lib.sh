# Shell helpers shared by the tests/infra scripts (sourced, not run).

alive() { [[ -f $1 ]] && kill -0 "$(cat "$1")" 2>/dev/null; } # the pid in file $1 runs
# wait_for SECONDS COMMAND...: retry COMMAND until it succeeds, for at most SECONDS
wait_for() {
    local end=$((SECONDS + $1))
    shift
    until "$@"; do
        ((SECONDS < end)) || return 1
        sleep 0.1
    done
}
# sshd_options BASE: what every test sshd's config shares: key-only logins for the users whose
# keys are in BASE/authorized_keys, keys under /tmp accepted, many sessions at once
sshd_options() {
    cat <<CONF
AuthorizedKeysFile $1/authorized_keys/%u
PasswordAuthentication no
KbdInteractiveAuthentication no
UsePAM no
PermitRootLogin prohibit-password
StrictModes no
UseDNS no
PrintMotd no
MaxStartups 100:30:200
MaxSessions 100
Subsystem sftp /usr/lib/openssh/sftp-server
CONF
}
stopped() { # all of these pids gone
    local pid
    for pid; do
        ! kill -0 "$pid" 2>/dev/null || return 1
    done
}
