#!/bin/bash
# CNI ADD and DEL, N sequential calls each, with every plugin exec'd the same way (a loop run
# inside one throwaway host namespace, the CNI_* variables exported, the configuration on stdin):
#   weft-cni      (one published port, against a weftd of its own, user network, embedded DNS)
#   bridge+portmap (the reference plugins with host-local IPAM, one published port, as the peers')
#   floor         (weft-cni VERSION: what starting a plugin process costs on this machine)
# Prints one markdown row each. Usage: bench/cni-weft.sh BIN_DIR [N]
set -uo pipefail
B=$(cd "$1" && pwd); N=${2:-100}; CNI=${CNI_PATH:-/usr/lib/cni}
H=cniweft-$$; tmp=$(mktemp -d)
ip netns add $H; ip -n $H link set lo up
for i in $(seq 1 $N); do ip netns add cniw$$-$i; done
nsenter --net=/run/netns/$H "$B/weftd" --host "unix://$tmp/weft.sock" --data-root "$tmp/data" --exec-root "$tmp/exec" >"$tmp/weftd.log" 2>&1 &
pid=$!
cleanup() {
  kill $pid 2>/dev/null; wait $pid 2>/dev/null
  for i in $(seq 1 $N); do ip netns del cniw$$-$i 2>/dev/null; done
  ip netns del $H 2>/dev/null; rm -rf "$tmp"
}
trap cleanup EXIT
for _ in $(seq 100); do [ -S $tmp/weft.sock ] && break; sleep 0.05; done
"$B/weft" -H "unix://$tmp/weft.sock" network create --subnet 10.89.0.0/16 cnibench >/dev/null
# One loop per row, inside the host namespace: prints "ADD_MS DEL_MS".
cat > $tmp/loop.sh <<'LOOP'
set -u
kind=$1; N=$2; B=$3; CNI=$4; tmp=$5; tag=$6
pm() { echo '"runtimeConfig":{"portMappings":[{"hostPort":'$((20000+$1))',"containerPort":80,"protocol":"tcp"}]}'; }
weft() { echo '{"cniVersion":"1.0.0","name":"cnibench","type":"weft-cni","socket":"'$tmp/weft.sock'",'"$(pm $1)"'}'; }
bridge() { echo '{"cniVersion":"1.0.0","name":"cnibr","type":"bridge","bridge":"cni0","isGateway":true,"ipMasq":true,"ipam":{"type":"host-local","subnet":"10.88.0.0/16","routes":[{"dst":"0.0.0.0/0"}],"dataDir":"'$tmp/ipam'"}}'; }
portmap() { echo '{"cniVersion":"1.0.0","name":"cnibr","type":"portmap","capabilities":{"portMappings":true},'"$(pm $1)"',"prevResult":'"$2"'}'; }
export CNI_IFNAME=eth0 CNI_PATH=$CNI
call() { export CNI_COMMAND=$1 CNI_CONTAINERID=c$2 CNI_NETNS=/run/netns/cniw$tag-$2; }
t0=$(date +%s%N)
for i in $(seq 1 $N); do
  case $kind in
    weft) call ADD $i; weft $i | $B/weft-cni >/dev/null || echo "add failed: $i" >&2 ;;
    bridge) call ADD $i; r=$(bridge | $CNI/bridge) || echo "add failed: $i" >&2; portmap $i "$r" | $CNI/portmap >/dev/null || echo "portmap failed: $i" >&2 ;;
    floor) call VERSION $i; weft $i | $B/weft-cni >/dev/null ;;
  esac
done
t1=$(date +%s%N)
for i in $(seq 1 $N); do
  case $kind in
    weft) call DEL $i; weft $i | $B/weft-cni >/dev/null || echo "del failed: $i" >&2 ;;
    bridge) call DEL $i; portmap $i '{"cniVersion":"1.0.0"}' | $CNI/portmap >/dev/null; bridge | $CNI/bridge >/dev/null || echo "del failed: $i" >&2 ;;
    floor) call VERSION $i; weft $i | $B/weft-cni >/dev/null ;;
  esac
done
t2=$(date +%s%N)
echo "$(( (t1-t0)/N/1000 )) $(( (t2-t1)/N/1000 ))"
LOOP
row() {
  read -r a d < <(nsenter --net=/run/netns/$H bash $tmp/loop.sh $1 $N "$B" "$CNI" "$tmp" $$)
  printf '| %s | %d | %d.%03d | %d.%03d |\n' "$2" $N $((a/1000)) $((a%1000)) $((d/1000)) $((d%1000))
}
row floor "process start floor (weft-cni VERSION)"
row weft "weft-cni (+1 port)"
row bridge "CNI bridge + host-local + portmap (+1 port)"
