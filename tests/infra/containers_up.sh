#!/usr/bin/env bash
# Idempotent: containers with no registry, state under $BASE. A busybox rootfs tarball (from
# Debian's busybox-static) imported as image bb:latest into podman (rootful, private storage,
# wrapper $BASE/bin/podman) and into a private dockerd (socket $BASE/docker/docker.sock); and
# bblibc:latest, the same with the C libraries python3 links to: an image with no Python of its
# own, in which an interpreter mounted from outside runs.
#   $BASE/bin/podman run --rm --network=none localhost/bb:latest sh -c 'echo hi'
#   DOCKER_HOST=unix://$BASE/docker/docker.sock docker run --rm --network=none bb:latest sh -c 'echo hi'
# What this machine needs (no CAP_SYS_RESOURCE, hybrid cgroups, no systemd): runc rather than
# crun, cgroupfs, explicit ulimits, and --network=none. Stop with containers_down.sh.
# PODMAN=0: no podman; IMPORT=0: an empty dockerd (a second machine's, to load images into).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
BASE=${BASE:?set BASE to a directory for the container state}
mkdir -p "$BASE/bin" "$BASE/docker"
NOFILE=$(ulimit -Hn)
NPROC=32768
PODMAN=${PODMAN:-1}
IMPORT=${IMPORT:-1}

if [[ ! -f $BASE/rootfs.tar ]]; then
    root=$BASE/rootfs
    rm -rf "$root"
    mkdir -p "$root/bin" "$root/tmp" "$root/etc" "$root/proc" "$root/sys" "$root/dev"
    cp /bin/busybox "$root/bin/busybox"
    for applet in $(/bin/busybox --list); do
        [[ $applet == busybox ]] || ln -sf busybox "$root/bin/$applet"
    done
    tar -C "$root" -cf "$BASE/rootfs.tar" .
fi
if [[ ! -f $BASE/libc-rootfs.tar ]]; then
    root=$BASE/libc-rootfs
    rm -rf "$root"
    mkdir -p "$root"
    tar -C "$root" -xf "$BASE/rootfs.tar"
    python=$(python3 -c "import os, sys; print(os.path.realpath(sys.executable))")
    for lib in $(ldd "$python" | grep -o '/[^ ]*' | grep -v "^$(dirname "$(dirname "$python")")/"); do
        mkdir -p "$root$(dirname "$lib")"
        cp -L "$lib" "$root$lib"
    done
    tar -C "$root" -cf "$BASE/libc-rootfs.tar" .
fi

if ((PODMAN)); then
cat > "$BASE/bin/podman" <<WRAPPER
#!/bin/sh
export CONTAINERS_CONF=$BASE/containers.conf
exec /usr/bin/podman --root $BASE/podman/root --runroot $BASE/podman/run --cgroup-manager=cgroupfs \\
    --events-backend=file --runtime runc "\$@"
WRAPPER
chmod +x "$BASE/bin/podman"
printf '[containers]\ndefault_ulimits = ["nofile=%s:%s", "nproc=%s:%s"]\n' \
    "$NOFILE" "$NOFILE" "$NPROC" "$NPROC" > "$BASE/containers.conf"
"$BASE/bin/podman" image exists localhost/bb:latest ||
    "$BASE/bin/podman" import -q "$BASE/rootfs.tar" localhost/bb:latest >/dev/null
"$BASE/bin/podman" image exists localhost/bblibc:latest ||
    "$BASE/bin/podman" import -q "$BASE/libc-rootfs.tar" localhost/bblibc:latest >/dev/null
"$BASE/bin/podman" run --rm --network=none localhost/bb:latest sh -c 'echo podman ok'
fi

docker=(/usr/bin/docker -H "unix://$BASE/docker/docker.sock")
if ! alive "$BASE/docker/dockerd.pid"; then
    nohup dockerd --data-root "$BASE/docker/data" --exec-root "$BASE/docker/exec" \
        --pidfile "$BASE/docker/dockerd.pid" -H "unix://$BASE/docker/docker.sock" \
        --iptables=false --ip6tables=false --bridge=none --containerd-namespace "expdeploy-$$" \
        --default-ulimit "nofile=$NOFILE:$NOFILE" --default-ulimit "nproc=$NPROC:$NPROC" \
        > "$BASE/docker/dockerd.log" 2>&1 &
    wait_for 60 "${docker[@]}" version >/dev/null 2>&1 || { tail -20 "$BASE/docker/dockerd.log" >&2; exit 1; }
fi
if ((IMPORT)); then
    "${docker[@]}" image inspect bb:latest >/dev/null 2>&1 ||
        "${docker[@]}" import "$BASE/rootfs.tar" bb:latest >/dev/null
    "${docker[@]}" image inspect bblibc:latest >/dev/null 2>&1 ||
        "${docker[@]}" import "$BASE/libc-rootfs.tar" bblibc:latest >/dev/null
    "${docker[@]}" run --rm --network=none bb:latest sh -c 'echo docker ok'
fi
