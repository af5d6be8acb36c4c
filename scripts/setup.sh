#!/bin/bash
# Installs what weft needs on a fresh Debian 12 machine (idempotent): nftables and its library
# (weft links libnftables in-process), iproute2 and util-linux for the tests' throwaway hosts, a
# static busybox for container root filesystems, procps for the leak checks, gcc and libc6-dev
# for the security tests' static attack tool, and Open vSwitch (ovsdb-server and ovs-vswitchd, which
# the OVS tests start in their own namespaces: the packages' services are not started), protoc
# and the well-known protobuf types (the etcd client's build compiles etcd's API), and etcd (the
# multi-host tests start their own cluster in namespaces; the package's service is not started),
# and the runtimes weft plugs into, driven by the integration tests in private namespaces: the
# CNI reference plugins, Go and libcni (a small libcni client is built offline), Podman, runc,
# containerd and Docker (their services are not started: the tests start them in private mount
# namespaces); and a font for the benches' plots.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for p in nftables libnftables-dev pkg-config iproute2 util-linux procps busybox-static conntrack python3-minimal gcc libc6-dev openvswitch-switch protobuf-compiler libprotobuf-dev etcd-server etcd-client containernetworking-plugins golang-go golang-github-appc-cni-dev podman runc containerd docker.io python3-docker python3-prometheus-client fonts-dejavu-core; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  # No service starts while installing (openvswitch-switch would start its daemons in the
  # machine's own namespace): the tests start what they need where they need it.
  policy=/usr/sbin/policy-rc.d
  made_policy=
  if [ ! -e "$policy" ]; then printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; made_policy=1; fi
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  if [ -n "$made_policy" ]; then rm -f "$policy"; fi
fi
# Kernel modules the engine uses (built in on some kernels; loading is best effort, the tests fail
# loudly if a feature is really missing).
for m in bridge veth nf_tables nf_nat nft_masq nf_conntrack; do modprobe -q "$m" 2>/dev/null || true; done
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
