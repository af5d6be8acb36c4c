# bench/plot.sh — sourced by the bench scripts after `cd` to the repository: what the script
# prints is kept in $BENCH_OUT/<script>.md, and `plot NAME ARGS…` draws a PNG of a table printed
# so far (weft-bench plot: lines with --x/--series, bars with --label) into $BENCH_OUT/NAME.png
# and names it under the table. tee runs beside the script: a plot first waits until what was
# printed before it is in the file.
BENCH_OUT=${BENCH_OUT:-target/bench}
mkdir -p "$BENCH_OUT"
BENCH_MD="$BENCH_OUT/$(basename "$0").md"
exec > >(tee "$BENCH_MD")
plot() {
  local name=$1; shift
  echo; echo "<!-- plot $name -->"
  for _ in $(seq 100); do grep -qxF "<!-- plot $name -->" "$BENCH_MD" && break; sleep 0.05; done
  if target/release/weft-bench plot --out "$BENCH_OUT/$name.png" "$@" <"$BENCH_MD"; then
    echo "plot: $BENCH_OUT/$name.png"
  else
    echo "plot: $name not drawn (the reason is above, on stderr)"
  fi
}
