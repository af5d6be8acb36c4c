#!/bin/bash
# The whole test suite: unit tests, and integration tests that start real daemons in throwaway
# network namespaces and check real traffic. Needs root. Leaves nothing behind.
set -euo pipefail
cd "$(dirname "$0")/.."
export PATH="$HOME/.cargo/bin:$PATH"
[ "$(id -u)" = 0 ] || { echo "test: run as root (the tests create network namespaces)" >&2; exit 1; }
bash scripts/setup.sh
cargo build --workspace --locked
cargo clippy --workspace --all-targets --locked -q -- -D warnings
# What the machine's own namespace holds before the run: the tests must leave it exactly so.
root_state() { ip -o link | awk -F': ' '{print "link " $2}' | cut -d@ -f1 | sort; nft list tables | sed 's/^/nft /' | sort; }
before=$(root_state)
# Everything but the slow capacity test, in parallel; then that one alone (it fills one bridge
# with 1,023 containers and leans on the machine-wide neighbour table).
cargo test --workspace --locked --no-fail-fast -- --test-threads="${WEFT_TEST_THREADS:-4}" --skip slow_
cargo test -p weft-itest --locked --test capacity -- --test-threads=1
# The leak check of the whole run: nothing of weft's may be left on the machine (each test's own
# check covers its throwaway host; this one covers the root namespace and what escaped a host).
# (Exited container inits waiting for the machine's init to reap them are not leaks: zombies skipped.)
left=$( (ip netns list | grep -E '^wt-|^weft' ; ps -eo stat=,pid=,args= | awk '$1 !~ /^Z/' | grep -E 'weft-itest|weftd|weft-init' | grep -v grep;
         grep -E 'weft-itest' /proc/self/mountinfo;
         find /sys/fs/cgroup -maxdepth 4 -type d -name 'weft-itest-*' 2>/dev/null;
         diff <(echo "$before") <(root_state) | grep '^[<>]') || true)
if [ -n "$left" ]; then echo "test: leftovers after the run:"; echo "$left"; exit 1; fi
echo "test: no leftovers (namespaces, processes, mounts, test cgroups, root-namespace links and nft tables)"
