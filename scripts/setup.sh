#!/bin/bash
# Installs what weft needs on a fresh Debian 12 machine (idempotent): nftables and its library
# (weft links libnftables in-process), iproute2 and util-linux for the tests' throwaway hosts, a
# static busybox for container root filesystems, procps for the leak checks, gcc and libc6-dev
# for the security tests' static attack tool.
set -euo pipefail
export DEBIAN_FRONTEND=noninteractive
need=()
for p in nftables libnftables-dev pkg-config iproute2 util-linux procps busybox-static conntrack python3-minimal gcc libc6-dev; do
  dpkg -s "$p" >/dev/null 2>&1 || need+=("$p")
done
if [ ${#need[@]} -gt 0 ]; then
  echo "setup: installing ${need[*]}"
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
fi
# Kernel modules the engine uses (built in on some kernels; loading is best effort, the tests fail
# loudly if a feature is really missing).
for m in bridge veth nf_tables nf_nat nft_masq nf_conntrack; do modprobe -q "$m" 2>/dev/null || true; done
command -v cargo >/dev/null || { echo "setup: cargo not found (install Rust with rustup)" >&2; exit 1; }
