#!/bin/bash
# Stops the sshd instances that sshd_up.sh started under $BASE: only the pids in its pid files.
BASE=${BASE:?set BASE to the directory sshd_up.sh used}
for f in "$BASE"/sshd_*.pid; do
  [ -f "$f" ] || continue
  p=$(cat "$f"); kill "$p" 2>/dev/null
  for _ in $(seq 50); do kill -0 "$p" 2>/dev/null || break; sleep 0.1; done
  rm -f "$f"
done
true
