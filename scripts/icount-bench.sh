#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Instruction counts: kernel instructions per page fault and per syscall,
# base vs patched (non-debug kernels), counted by the QEMU TCG icount plugin
# (scripts/icount.sh).  Boots the base, the patched, the base and the
# patched kernel again, each with one vCPU, pmem (memmap=512M!1G) and the
# plugin, runs `fpc-bench icount` with every variant (none, key-on,
# hsm-filled) in each boot, then prints the table (`fpc-bench
# icount-report`; the second pair of boots measures the noise between
# boots) and plots it (icount.png, matplotlib in a venv under $FPC_CACHE).
# Before the boots it compares the base and the patched vmlinux with the
# kernel tree's scripts/bloat-o-meter (bloat.txt, summed up in icount.md).
# scripts/bench.sh runs it first.  See "Benchmarks" in README.md.
#
# Usage: scripts/icount-bench.sh [--patched DIR] [--base DIR] [--out DIR] [--windows N] [--no-control] [-- GUEST-ARGS...]
#   --patched DIR  patched kernel build dir (default $FPC_CACHE/build/patched-bench,
#                  built with scripts/build.sh --bench if missing; env FPC_BENCH_PATCHED)
#   --base DIR     base kernel build dir (default $FPC_CACHE/build/base-bench,
#                  built with scripts/build.sh --bench --base if missing; env FPC_BENCH_BASE)
#   --out DIR      where logs, icount.md, icount.csv, icount.png and bloat.txt go (default
#                  $FPC_CACHE/bench/icount-<date>; no spaces: vng splits QEMU options)
#   --windows N    windows per scenario (default 2000)
#   --no-control   no second pair of boots (the spreads then miss the noise between boots)
#   GUEST-ARGS     passed to `fpc-bench icount` in every VM (see fpc-bench icount --help)
# The fpc-bench binary is built in $CARGO_TARGET_DIR (default selftests/target).
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '3,/^[^#]/s/^# \{0,1\}//p' "$0"; }
bad() { echo "error: $*" >&2; usage >&2; exit 2; }

patched=${FPC_BENCH_PATCHED:-} base=${FPC_BENCH_BASE:-} out="" windows=2000 control=1 extra=()
while [ $# -gt 0 ]; do
	case "$1" in
	--patched) [ $# -ge 2 ] || bad "$1 needs a directory"; patched=$2; shift 2 ;;
	--base) [ $# -ge 2 ] || bad "$1 needs a directory"; base=$2; shift 2 ;;
	--out) [ $# -ge 2 ] || bad "$1 needs a directory"; out=$2; shift 2 ;;
	--windows) [ $# -ge 2 ] || bad "$1 needs a number"; windows=$2; shift 2 ;;
	--no-control) control=0; shift ;;
	-h|--help) usage; exit 0 ;;
	--) shift; extra=("$@"); break ;;
	*) bad "unknown argument $1" ;;
	esac
done
[[ "$windows" =~ ^[1-9][0-9]*$ ]] || bad "--windows: not a positive number: $windows"
[ "$(id -u)" = 0 ] || die "icount-bench.sh must run as root (VM, loop devices)"
start=$(date +%s)

# Kernels: given ones must exist; default ones are built when missing.
command -v vng >/dev/null || "$FPC_TOP/scripts/setup.sh"
fpc_bench_kernels
bloat_o_meter="$FPC_SRC/scripts/bloat-o-meter"
[ -f "$bloat_o_meter" ] ||
	die "no $bloat_o_meter: the kernel tree is missing (scripts/fetch-base.sh makes it)"
for k in "$base" "$patched"; do
	[ -f "$k/vmlinux" ] || die "no vmlinux in $k (bloat-o-meter compares the base and the patched one)"
done
fpc_plot_venv

"$FPC_TOP/scripts/icount.sh" build
plugin="$FPC_CACHE/icount/icount.so"
(cd "$FPC_TOP/selftests" && cargo build --release --locked -q -p fpc-bench) || die "cargo build failed"
target=${CARGO_TARGET_DIR:-$FPC_TOP/selftests/target}
case "$target" in /*) ;; *) target="$FPC_TOP/selftests/$target" ;; esac
bin="$target/release/fpc-bench"
[ -x "$bin" ] || die "no $bin after cargo build"

[ -n "$out" ] || out="$FPC_CACHE/bench/icount-$(date +%Y%m%d-%H%M%S)"
mkdir -p "$out"
out=$(cd "$out" && pwd)
case "$out$plugin" in *[[:space:],]*) die "paths with spaces or commas cannot go through vng's --qemu-opts: $out, $plugin" ;; esac

# The code size, base -> patched (of the kernels about to be booted).
python3 "$bloat_o_meter" "$base/vmlinux" "$patched/vmlinux" >"$out/bloat.txt" ||
	die "bloat-o-meter $base/vmlinux $patched/vmlinux failed"
# Its summary line, its total and the 10 largest changes (either sign).
bloat_summary() {
	echo "## Code size: scripts/bloat-o-meter, base -> patched vmlinux"
	echo
	echo "The 10 largest changes; all of them in bloat.txt."
	echo
	echo '```'
	sed -n '1,2p' "$out/bloat.txt"
	awk 'NR > 2 && $1 != "Total:" { d = $NF + 0; print (d < 0 ? -d : d) "\t" $0 }' "$out/bloat.txt" |
		sort -t "$(printf '\t')" -k1,1nr -s | cut -f2- | sed -n '1,10p'
	grep '^Total:' "$out/bloat.txt"
	echo '```'
}

# One boot per kernel (twice each, interleaved), every variant in it (in
# the order none, key-on, hsm-filled: the static key never goes off).  The plugin writes its
# "icount mark=" lines to $label.icount on the host; the guest's lines go
# to $label.out.  TCG only: plugins do not run under KVM.
run_guest() { # label kernel
	local label=$1 kdir=$2 t0=$SECONDS
	info "booting $label ($kdir) under the icount plugin"
	rm -f "$out/$label.icount"
	FPC_KVM=0 "$FPC_TOP/scripts/vm-run.sh" --cpus 1 --timeout 3000 --append 'memmap=512M!1G' \
		--qemu-opts "-plugin $plugin,outfile=$out/$label.icount" "$kdir" -- \
		"$bin" icount --windows "$windows" ${extra[@]+"${extra[@]}"} | tee "$out/$label.out" ||
		die "the $label guest run failed (logs: $out/$label.out, $out/$label.icount)"
	info "$label: $((SECONDS - t0)) s"
}
run_guest base "$base"
run_guest patched "$patched"
ctl=()
if [ $control = 1 ]; then
	run_guest base2 "$base"
	run_guest patched2 "$patched"
	ctl=(--base2 "$out/base2.icount" --base2-out "$out/base2.out"
		--patched2 "$out/patched2.icount" --patched2-out "$out/patched2.out")
fi

{
	echo "# fpc-bench icount, $(date -u +%Y-%m-%dT%H:%MZ)"
	echo
	echo "- base: $base ($(cat "$base/include/config/kernel.release" 2>/dev/null || echo '?'))"
	echo "- patched: $patched ($(cat "$patched/include/config/kernel.release" 2>/dev/null || echo '?'))"
	echo "- series: $(git -C "$FPC_TOP" rev-parse --short HEAD 2>/dev/null || echo '?')$(git -C "$FPC_TOP" diff --quiet HEAD -- patches 2>/dev/null || echo ' (patches/ modified)')"
	echo "- QEMU $(qemu-system-x86_64 --version | sed -n '1s/.*version \([^ ]*\).*/\1/p') TCG, one vCPU, $windows windows per scenario"
	"$bin" icount-report --base "$out/base.icount" --patched "$out/patched.icount" \
		--base-out "$out/base.out" --patched-out "$out/patched.out" ${ctl[@]+"${ctl[@]}"} \
		--csv "$out/icount.csv"
	echo
	bloat_summary
} | tee "$out/icount.md"
"$FPC_PLOT_PYTHON" "$FPC_TOP/scripts/bench-plot.py" --icount "$out/icount.csv" "$out/icount.png" \
	"fpc-bench icount $(date -u +%Y-%m-%d): kernel instructions, patched vs base, TCG, one vCPU" >/dev/null ||
	die "plot failed"
info "results in $out: icount.md, icount.csv, icount.png, bloat.txt, {base,patched}[2].out (guest), {base,patched}[2].icount (plugin)"
info "icount-bench.sh wall time: $(( $(date +%s) - start )) s"
