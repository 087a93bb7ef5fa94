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
stopped() { # all of these pids gone
    local pid
    for pid; do
        ! kill -0 "$pid" 2>/dev/null || return 1
    done
}
