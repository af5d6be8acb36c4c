#!/bin/bash
# A minimal root filesystem for containers (`weft run --rootfs DIR`): Debian's static busybox with
# a link per applet, /etc/passwd, and the usual empty directories. Usage: scripts/rootfs.sh DIR
# (needs busybox-static, which scripts/setup.sh installs).
set -euo pipefail
dir=${1:?usage: scripts/rootfs.sh DIR}
bb=$(readlink -f /bin/busybox)
[ -x "$bb" ] || { echo "rootfs: /bin/busybox missing: install busybox-static (scripts/setup.sh does)" >&2; exit 1; }
mkdir -p "$dir"/{bin,etc,proc,sys,dev,tmp,root} "$dir$(dirname "$bb")"
cp "$bb" "$dir$bb"
[ "$dir$bb" -ef "$dir/bin/busybox" ] || ln -f "$dir$bb" "$dir/bin/busybox"
# One link per applet, to the path busybox runs from (inside the rootfs after the pivot).
"$bb" --install -s "$dir/bin"
echo "root:x:0:0:root:/root:/bin/sh" > "$dir/etc/passwd"
