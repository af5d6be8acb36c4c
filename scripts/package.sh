#!/bin/bash
# Builds weft's Debian package: weftd, weft, weft-init (/usr/bin), weft-cni (/usr/lib/cni, where
# Debian's runtimes look), a systemd unit and a plain init script (packaging/), /etc/default/weft
# (WEFTD_OPTS), bash/zsh/fish completions and man pages generated from the clap definitions.
# Usage: scripts/package.sh [BIN_DIR [OUT_DIR]]   (default: a release build, into target/debian)
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
if [ $# -ge 1 ]; then
  B=$(cd "$1" && pwd)
else
  cargo build --release --locked -q -p weftd -p weft -p weft-init -p weft-cni
  B=$PWD/target/release
fi
OUT=${2:-target/debian}; mkdir -p "$OUT"; OUT=$(cd "$OUT" && pwd)
V=$(sed -n 's/^version = "\(.*\)"/\1/p' Cargo.toml | head -1)
ARCH=$(dpkg --print-architecture)
R=$(mktemp -d); trap 'rm -rf "$R"' EXIT
for b in weftd weft weft-init; do install -D -m 755 "$B/$b" "$R/usr/bin/$b"; done
install -D -m 755 "$B/weft-cni" "$R/usr/lib/cni/weft-cni"
install -D -m 644 packaging/weft.service "$R/lib/systemd/system/weft.service"
install -D -m 755 packaging/weft.init "$R/etc/init.d/weft"
install -D -m 644 packaging/weft.default "$R/etc/default/weft"
mkdir -p "$R/usr/share/bash-completion/completions" "$R/usr/share/zsh/vendor-completions" "$R/usr/share/fish/vendor_completions.d" \
  "$R/usr/share/man/man1" "$R/usr/share/man/man8" "$R/usr/share/doc/weft" "$R/DEBIAN"
"$B/weft" completion bash > "$R/usr/share/bash-completion/completions/weft"
"$B/weft" completion zsh > "$R/usr/share/zsh/vendor-completions/_weft"
"$B/weft" completion fish > "$R/usr/share/fish/vendor_completions.d/weft.fish"
"$B/weft" man | gzip -9n > "$R/usr/share/man/man1/weft.1.gz"
"$B/weftd" --print-man | sed 's/^\.TH weftd 1/.TH weftd 8/' | gzip -9n > "$R/usr/share/man/man8/weftd.8.gz"
cp README.md docs/integrations.md docs/configuration.md "$R/usr/share/doc/weft/"
cat > "$R/DEBIAN/control" <<CONTROL
Package: weft
Version: $V
Architecture: $ARCH
Maintainer: weft developers <weft@localhost>
Depends: libc6, libnftables1, iproute2
Recommends: busybox-static, containernetworking-plugins
Section: net
Priority: optional
Installed-Size: $(du -sk "$R/usr" | cut -f1)
Description: container networking, the Docker way
 weftd sets up bridges, veth pairs, IPAM, NAT, published ports, an embedded DNS and
 more for containers it runs and for those of Podman, containerd, dockerd and runc
 (a CNI plugin, a Docker network and IPAM driver, an OCI hook); weft is its CLI.
CONTROL
printf '/etc/default/weft\n/etc/init.d/weft\n' > "$R/DEBIAN/conffiles"
deb="$OUT/weft_${V}_${ARCH}.deb"
# (DEB_COMPRESS=none for a quick local build, as the package test does.)
dpkg-deb --root-owner-group -Z"${DEB_COMPRESS:-xz}" --build "$R" "$deb" >/dev/null
echo "$deb"
