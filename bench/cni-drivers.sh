#!/bin/bash
# N sequential CNI ADDs then N DELs with the reference `macvlan` (master PARENT) and `ptp`
# plugins and host-local IPAM, run in host namespace HOST; prints one markdown row per plugin.
# Usage: bench/cni-drivers.sh HOST PARENT [N]
set -uo pipefail
H=$1; PARENT=$2; N=${3:-100}; export CNI_PATH=${CNI_PATH:-/usr/lib/cni}
data=$(mktemp -d)
trap 'for i in $(seq 1 $N); do ip netns del cnid$$-$i 2>/dev/null; done; rm -rf "$data"' EXIT
for i in $(seq 1 $N); do ip netns add cnid$$-$i; done
ipam() { echo '"ipam":{"type":"host-local","subnet":"'$1'","dataDir":"'$data/$2'"}'; }
run() { nsenter --net=/var/run/netns/$H env CNI_COMMAND=$1 CNI_CONTAINERID=c$2 CNI_NETNS=/var/run/netns/cnid$$-$2 CNI_IFNAME=eth0 "$CNI_PATH/$3"; }
for plugin in macvlan ptp; do
  case $plugin in
    macvlan) conf='{"cniVersion":"0.4.0","name":"cnimv","type":"macvlan","master":"'$PARENT'","mode":"bridge",'$(ipam 10.210.0.0/16 mv)'}' ;;
    ptp) conf='{"cniVersion":"0.4.0","name":"cniptp","type":"ptp",'$(ipam 10.211.0.0/16 ptp)'}' ;;
  esac
  t0=$(date +%s%N)
  for i in $(seq 1 $N); do run ADD $i $plugin <<<"$conf" >/dev/null || echo "$plugin add failed: $i" >&2; done
  t1=$(date +%s%N)
  for i in $(seq 1 $N); do run DEL $i $plugin <<<"$conf" >/dev/null || echo "$plugin del failed: $i" >&2; done
  t2=$(date +%s%N)
  awk -v p="$plugin" -v n=$N -v a=$((t1-t0)) -v d=$((t2-t1)) 'BEGIN { printf "| CNI %s (mean of %d) | %.3f | | %.3f | |\n", p, n, a/n/1e6, d/n/1e6 }'
done
