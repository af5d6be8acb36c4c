#!/bin/bash
# `docker run --rm … true`, N sequential runs each: with --net=none, on Docker's own bridge with
# one published port, and on a weft network (weft as Docker's network and IPAM driver) with one
# published port; dockerd and weftd in one throwaway namespace, dockerd in a private mount
# namespace. Prints one markdown row each (mean per container, and minus --net=none: what the
# networking costs). Usage: bench/docker-weft.sh BIN_DIR ROOTFS [N]
set -uo pipefail
B=$(cd "$1" && pwd); R=$2; N=${3:-20}
H=dockweft-$$; tmp=$(mktemp -d); sock=$tmp/docker.sock
ip netns add $H; ip -n $H link set lo up
nsenter --net=/run/netns/$H "$B/weftd" --host "unix://$tmp/weft.sock" --data-root "$tmp/wdata" --exec-root "$tmp/wexec" --docker-plugin-socket "$tmp/plugin.sock" >"$tmp/weftd.log" 2>&1 &
wpid=$!
for _ in $(seq 100); do [ -S $tmp/plugin.sock ] && break; sleep 0.05; done
nsenter --net=/run/netns/$H unshare -m --propagation private sh -c "mount -t tmpfs x /run && mount -t tmpfs x /etc/docker && mkdir -p /etc/docker/plugins && echo unix://$tmp/plugin.sock > /etc/docker/plugins/weft.spec && exec dockerd --data-root $tmp/data --exec-root $tmp/exec -H unix://$sock --pidfile $tmp/pid --cgroup-parent /dockweft-$$" >$tmp/dockerd.log 2>&1 &
dpid=$!
cleanup() {
  D rm -f $(D ps -aq 2>/dev/null) >/dev/null 2>&1
  D network rm wnet >/dev/null 2>&1
  kill $dpid 2>/dev/null; for _ in $(seq 100); do kill -0 $dpid 2>/dev/null || break; sleep 0.1; done
  kill $wpid 2>/dev/null; wait $wpid 2>/dev/null
  for c in /sys/fs/cgroup/*/dockweft-$$; do [ -d "$c" ] && find "$c" -depth -type d -exec rmdir {} \; 2>/dev/null; done
  ip netns del $H 2>/dev/null; rm -rf "$tmp" 2>/dev/null
}
D() { docker -H unix://$sock "$@"; }
trap cleanup EXIT
for _ in $(seq 120); do D info >/dev/null 2>&1 && break; sleep 0.5; done
tar -C "$R" -cf $tmp/rootfs.tar . && D import $tmp/rootfs.tar bb >/dev/null
D network create -d weft --ipam-driver weft --subnet 10.87.0.0/16 wnet >/dev/null
D run --rm --net=none bb true >/dev/null  # warm-up
mean() { local t0=$(date +%s%N); for i in $(seq 1 $N); do "$@" $i >/dev/null || echo "failed: $*" >&2; done; echo $(( ($(date +%s%N)-t0)/N/1000 )); }
none() { D run --rm --net=none bb true; }
bridge() { D run --rm -p $((21000+$1)):80 bb true; }
weft() { D run --rm --network wnet -p $((22000+$1)):80 bb true; }
n=$(mean none); b=$(mean bridge); w=$(mean weft)
ms() { printf '%d.%03d' $(($1/1000)) $(($1%1000)); }
printf '| docker run --rm --net=none | %d | %s | |\n' $N "$(ms $n)"
printf '| docker run --rm, Docker bridge + -p | %d | %s | %s |\n' $N "$(ms $b)" "$(ms $((b-n)))"
printf '| docker run --rm, weft driver + IPAM + -p | %d | %s | %s |\n' $N "$(ms $w)" "$(ms $((w-n)))"
