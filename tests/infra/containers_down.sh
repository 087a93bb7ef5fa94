#!/usr/bin/env bash
# Stops what containers_up.sh started under $BASE: its containers, its dockerd (by pid file).
source "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to the directory containers_up.sh used}
if [[ -x $BASE/bin/podman ]]; then
    "$BASE/bin/podman" rm -f --all >/dev/null 2>&1
fi
if alive "$BASE/docker/dockerd.pid"; then
    docker=(/usr/bin/docker -H "unix://$BASE/docker/docker.sock")
    ids=$("${docker[@]}" ps -q 2>/dev/null)
    # shellcheck disable=SC2086 # one id per word
    [[ -z $ids ]] || "${docker[@]}" rm -f $ids >/dev/null 2>&1
    pid=$(cat "$BASE/docker/dockerd.pid")
    kill "$pid"
    wait_for 30 stopped "$pid"
fi
mountpoint -q "$BASE/docker/exec/netns/default" 2>/dev/null && umount "$BASE/docker/exec/netns/default"
true
