#!/bin/bash
# weft's main job: build, start weftd on its embedded store inside a throwaway "host" namespace
# (the machine's own network is never touched), and show containers talking over the default
# bridge, reaching an "outside" host through NAT, and a published port answering that host. KEEP=1 leaves the daemon running to play with.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "demo: run as root" >&2; exit 1; }
bash scripts/setup.sh
cargo build --release --workspace --locked
B=$PWD/target/release
D=${DEMO_DIR:-/tmp/weft-demo}; NS=weft-demo; OUT=weft-demo-out
SOCK=unix://$D/weft.sock
cleanup() {
  [ -S "$D/weft.sock" ] && for c in $("$B/weft" -H $SOCK ps -aq 2>/dev/null); do "$B/weft" -H $SOCK rm -f "$c" >/dev/null 2>&1 || true; done
  [ -f "$D/weftd.pid" ] && kill "$(cat "$D/weftd.pid")" 2>/dev/null && sleep 0.3
  ip netns del $OUT 2>/dev/null || true; ip netns del $NS 2>/dev/null || true
  rm -rf "$D"
}
cleanup; mkdir -p "$D"
[ "${KEEP:-0}" = 1 ] || trap cleanup EXIT
step() { printf '\n\033[1m$ %s\033[0m\n' "$*"; "$@"; }

ip netns add $NS; ip -n $NS link set lo up
# An "outside" host on an uplink, with no route back to the container subnet: only NAT reaches it.
ip netns add $OUT; ip -n $NS link add up0 type veth peer name eth0 netns $OUT
ip -n $NS addr add 198.51.100.1/24 dev up0; ip -n $NS link set up0 up
ip -n $OUT link set lo up; ip -n $OUT addr add 198.51.100.2/24 dev eth0; ip -n $OUT link set eth0 up
bash scripts/rootfs.sh "$D/rootfs"

nsenter --net=/run/netns/$NS "$B/weftd" --host $SOCK --data-root "$D/data" --exec-root "$D/exec" >"$D/weftd.log" 2>&1 &
echo $! > "$D/weftd.pid"
for _ in $(seq 50); do "$B/weft" -H $SOCK ps >/dev/null 2>&1 && break; sleep 0.1; done
W() { "$B/weft" -H $SOCK "$@"; }
step W network ls
step W run -d --name web --rootfs "$D/rootfs" -p 8080:80 -- sh -c 'mkdir -p /www && echo "hello from $(hostname) at $(ip -4 -o addr show eth0 | awk "{print \$4}")" > /www/index.html && exec httpd -f -p 80 -h /www'
WEB=$(W inspect -f '{{.NetworkSettings.IPAddress}}' web)
step W run --rm --name client --rootfs "$D/rootfs" -- sh -c "ping -c2 $WEB && wget -q -O- http://$WEB/ && ping -c1 198.51.100.2"
step W port web
echo "what a pipe types into -i" | step W run -i --rm --rootfs "$D/rootfs" -- tr a-z A-Z   # stdin relayed; -i -t gives a terminal
step W exec web -- sh -c 'ls /proc | grep -c "^[0-9]"'                                     # a command beside httpd, its pid namespace
step ip netns exec $OUT busybox wget -q -O- http://198.51.100.1:8080/     # the outside host, through the published port
step W ps
step W inspect -f 'web: pid {{.State.Pid}} ip {{.NetworkSettings.IPAddress}} mac {{.NetworkSettings.MacAddress}} sandbox {{.NetworkSettings.SandboxKey}}' web
step ip -n $NS -br link show master weft0
step ip netns exec $NS nft list table inet weft
if [ "${KEEP:-0}" = 1 ]; then
  echo; echo "weftd keeps running: $B/weft -H $SOCK ps   (stop: KEEP=0 bash scripts/demo.sh cleans up)"
  echo "a shell in web: $B/weft -H $SOCK exec -i -t web sh   (CTRL+P CTRL+Q detaches from run -i -t and attach)"
fi
echo; echo "demo: ok"
