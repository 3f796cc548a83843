#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Benchmarks, both parts in one run (see "Benchmarks" in README.md):
# 1. the instruction counts: scripts/icount-bench.sh with the same kernels,
#    into <out>/icount (icount.md, icount.csv, icount.png, bloat.txt);
# 2. the wall clock: boot the non-debug base kernel (P1), the non-debug
#    patched kernel (P1-P5) and the base kernel again (P1), run `fpc-bench
#    guest` in each, then print the ratios (`fpc-bench report`: P1 against
#    the mean of the two base boots, whose difference is the noise floor)
#    and plot them (matplotlib, in a venv under $FPC_CACHE).  The guests
#    also measure the --nosync, --host-source and --fill-size 1M variants
#    (hsm-serve --fill-size 1M: rows P2/P3/P4 fill), and the patched guest
#    the HTTP source (parts http, http-p4: nginx in the guest over three
#    link profiles shaped with netem; rows H1/H10/H50/HP4, the table of
#    time, bytes and physical bound per link and mode, http.png), and the
#    lazy directories (part lazydir: stat of a deep path, rustc --version
#    and find from a lazy clone of the whole toolchain vs an eager stub
#    tree vs a native copy; the table's last section).
# At the end it prints both tables.
#
# Usage: scripts/bench.sh [--patched DIR] [--base DIR] [--out DIR] [--quick] [--icount | --no-icount] [-- GUEST-ARGS...]
#   --patched DIR  patched kernel build dir (default $FPC_CACHE/build/patched-bench,
#                  built with scripts/build.sh --bench if missing; env FPC_BENCH_PATCHED)
#   --base DIR     base kernel build dir (default $FPC_CACHE/build/base-bench,
#                  built with scripts/build.sh --bench --base if missing; env FPC_BENCH_BASE)
#   --out DIR      where logs, tables, CSVs and PNGs go (default $FPC_CACHE/bench/<date>;
#                  no spaces or commas with the instruction counts: vng splits QEMU options)
#   --quick        fewer runs and 200 instruction-count windows (a smoke test; the
#                  numbers mean little)
#   --icount       only the instruction counts (scripts/icount-bench.sh with these
#                  --patched/--base/--out; GUEST-ARGS go to `fpc-bench icount`)
#   --no-icount    only the wall clock
#   GUEST-ARGS     passed to `fpc-bench guest` in every wall-clock VM (see
#                  fpc-bench guest --help)
# The fpc-bench binary is built in $CARGO_TARGET_DIR (default selftests/target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; }
bad() { echo "error: $*" >&2; usage >&2; exit 2; }

patched=${FPC_BENCH_PATCHED:-} base=${FPC_BENCH_BASE:-} out="" quick=0 icount=both extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--patched) [ $# -ge 2 ] || bad "$1 needs a directory"; patched=$2; shift 2 ;;
	--base) [ $# -ge 2 ] || bad "$1 needs a directory"; base=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || bad "$1 needs a directory"; out=$2; shift 2 ;;
	--quick) quick=1; shift ;;
	--icount|--no-icount)
		[ $icount = both ] || bad "--icount and --no-icount do not go together (neither: both parts)"
		if [ "$1" = --icount ]; then icount=only; else icount=no; fi
		shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) bad "unknown argument $1" ;;
	esac
done
icount_args=()
[ $quick = 0 ] || icount_args=(--windows 200)
if [ $icount = only ]; then
	exec "$FPC_TOP/scripts/icount-bench.sh" ${patched:+--patched "$patched"} ${base:+--base "$base"} \
		${out:+--out "$out"} ${icount_args[@]+"${icount_args[@]}"} -- ${extra[@]+"${extra[@]}"}
fi
if [ $icount = both ]; then
	case "$out" in *[[:space:],]*) bad "--out: no spaces or commas with the instruction counts (vng splits QEMU options): $out" ;; esac
fi
[ "$(id -u)" = 0 ] || die "bench.sh must run as root (VM, loop devices)"
start=$(date +%s)

# Kernels: given ones must exist; default ones are built when missing.
need_setup=0
command -v vng >/dev/null || need_setup=1
command -v bindfs >/dev/null || need_setup=1
command -v nginx >/dev/null || need_setup=1
command -v tc >/dev/null || need_setup=1
[ $need_setup = 0 ] || "$FPC_TOP/scripts/setup.sh"
fpc_bench_kernels

(cd "$FPC_TOP/selftests" && cargo build --release --locked -q) || die "cargo build failed"
target=${CARGO_TARGET_DIR:-$FPC_TOP/selftests/target}
case "$target" in /*) ;; *) target="$FPC_TOP/selftests/$target" ;; esac
bin="$target/release/fpc-bench"
[ -x "$bin" ] || die "no $bin after cargo build"
toolchain=$(rustc --print sysroot) || die "rustc not found"
[ -x "$toolchain/bin/rustc" ] || die "$toolchain has no bin/rustc"

fpc_plot_venv

[ -n "$out" ] || out="$FPC_CACHE/bench/$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)

# Part 1: the instruction counts (their own boots, TCG, one vCPU).
if [ $icount = both ]; then
	"$FPC_TOP/scripts/icount-bench.sh" --patched "$patched" --base "$base" --out "$out/icount" \
		${icount_args[@]+"${icount_args[@]}"} ||
		die "the instruction counts failed (scripts/icount-bench.sh; logs in $out/icount)"
fi

# --nosync and --host-source: the variants that explain P3 and P4 (README);
# --fill-size 1M: hsm-serve filling 1 MiB chunks (fewer events, more bytes).
# 4G: the lazydir part adds a whole copy of the toolchain (1.4G) to the image.
guest_args=(--toolchain "$toolchain" --nosync --host-source --fill-size 1M --image-size 4G)
[ $quick = 0 ] || guest_args+=(--p1-runs 2 --p23-runs 1 --p4-runs 1 --p5-runs 2 --lazydir-runs 1)
# The lazydir part's tree, as one tar archive: the guest extracts it in
# about 3 minutes under TCG, where copying its 50,000 files one by one over
# 9p took over 15.  Made once per toolchain; older ones are removed.
mkdir -p "$FPC_CACHE/bench"
# Keyed on the toolchain's listing (names, sizes, mtimes): a component
# added or updated makes a new one.
tc_key=$(cd "$toolchain" && find . -printf '%P %s %T@\n' | LC_ALL=C sort | sha256sum | cut -c1-12)
tc_tar="$FPC_CACHE/bench/toolchain-$tc_key.tar"
if [ ! -s "$tc_tar" ]; then
	rm -f "$FPC_CACHE"/bench/toolchain-*.tar "$FPC_CACHE"/bench/toolchain-*.tar.tmp
	info "tar of $toolchain for the lazydir part: $tc_tar"
	tar -C "$toolchain" -cf "$tc_tar.tmp" . || die "tar of $toolchain failed"
	mv "$tc_tar.tmp" "$tc_tar"
fi
guest_args+=(--lazydir-tar "$tc_tar")
guest_args+=(${extra[@]+"${extra[@]}"})

# Part 2: the wall clock.  One boot per kernel (the base twice: the noise
# floor of P1).  8G: the toolchain copies live in a loop image on the guest's
# tmpfs.
run_guest() { # label kernel parts
	local label=$1 kdir=$2 parts=$3 t0=$SECONDS
	info "booting $label ($kdir): parts $parts"
	"$FPC_TOP/scripts/vm-run.sh" --memory 8G "$kdir" -- \
		"$bin" guest --label "$label" --parts "$parts" "${guest_args[@]}" | tee "$out/$label.log" ||
		die "the $label guest run failed (log: $out/$label.log)"
	info "$label: $((SECONDS - t0)) s"
}
run_guest base "$base" p1
run_guest patched "$patched" p1,p2,p3,p4,p5,http,http-p4,lazydir
run_guest base2 "$base" p1

if [ $icount = both ]; then
	echo
	echo "== Instruction counts ($out/icount: icount.md, icount.csv, icount.png, bloat.txt)"
	echo
	cat "$out/icount/icount.md"
	echo
	echo "== Wall clock ($out: table.txt, table.md, ratios.csv, ratios.png, http.csv, http.png)"
	echo
fi
{
	echo "fpc-bench, $(date -u +%Y-%m-%dT%H:%MZ), $(nproc) host CPUs, TCG unless KVM was probed usable"
	echo "base:    $base ($(cat "$base/include/config/kernel.release" 2>/dev/null || echo '?'))"
	echo "patched: $patched ($(cat "$patched/include/config/kernel.release" 2>/dev/null || echo '?'))"
	echo "toolchain: $("$toolchain/bin/rustc" --version)"
	echo
	"$bin" report --base "$out/base.log" --patched "$out/patched.log" --control "$out/base2.log" \
		--csv "$out/ratios.csv" --http-csv "$out/http.csv"
} | tee "$out/table.txt"
"$bin" report --base "$out/base.log" --patched "$out/patched.log" --control "$out/base2.log" \
	--markdown >"$out/table.md"
"$FPC_PLOT_PYTHON" "$FPC_TOP/scripts/bench-plot.py" "$out/ratios.csv" "$out/ratios.png" \
	"fpc-bench $(date -u +%Y-%m-%d): patched vs base, TCG guest" >/dev/null ||
	die "plot failed"
if [ "$(wc -l <"$out/http.csv")" -gt 1 ]; then
	"$FPC_PLOT_PYTHON" "$FPC_TOP/scripts/bench-plot.py" --http "$out/http.csv" "$out/http.png" \
		"fpc-bench $(date -u +%Y-%m-%d): rustc --version from nginx over netem, TCG guest" >/dev/null ||
		die "HTTP plot failed"
fi
info "results in $out: table.txt, table.md, ratios.csv, ratios.png, http.csv, http.png, {base,patched,base2}.log$([ $icount = no ] || echo ', icount/')"
info "bench.sh wall time: $(( $(date +%s) - start )) s"
