# bench/plot.sh — sourced by the bench scripts after `cd` to the repository: what the script
# prints is kept in $BENCH_OUT/<script>.md, and `plot NAME ARGS…` draws a PNG of a table printed
# so far (weft-bench plot: lines with --x/--series, bars with --label) into $BENCH_OUT/NAME.png
# and names it under the table.
BENCH_OUT=${BENCH_OUT:-target/bench}
mkdir -p "$BENCH_OUT"
BENCH_MD="$BENCH_OUT/$(basename "$0").md"
exec > >(tee "$BENCH_MD")
plot() {
  local name=$1; shift
  target/release/weft-bench plot --out "$BENCH_OUT/$name.png" "$@" <"$BENCH_MD"
  echo; echo "plot: $BENCH_OUT/$name.png"
}
