#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Guest instruction counts under QEMU TCG: the icount plugin
# (selftests/bench/icount/icount.c) counts kernel- and user-mode
# instructions and prints "icount mark=N kernel=K user=U" (cumulative) each
# time the guest executes the marker instruction xchg %r15,%r15; the
# difference of two lines is the count of the window between them.
#
# Usage: scripts/icount.sh build
#        scripts/icount.sh check [KERNEL-BUILD-DIR]
#   build  compile the plugin ($FPC_CACHE/icount/icount.so) and the
#          known-count guest program ($FPC_CACHE/icount/loop) with the host
#          C compiler ($CC, default cc), when a source is newer
#   check  build, then boot the kernel (default $FPC_BUILD) with one vCPU
#          under TCG and the plugin, run `loop` (3 * ITERATIONS + 2 user
#          instructions between its markers) and check the plugin counts
#          exactly that; prints the kernel-mode count of the window too
#          (timer interrupts).  ITERATIONS: env FPC_ICOUNT_ITERS, default
#          10000000 (with 1000000 a window sometimes saw no timer tick).
#
# Running a guest under the plugin by hand:
#   scripts/vm-run.sh --cpus 1 --qemu-opts "-plugin $FPC_CACHE/icount/icount.so -d plugin -D LOG" \
#       KDIR -- PROGRAM
# (FPC_KVM=0: plugins need TCG.)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { sed -n '3,23s/^# \{0,1\}//p' "$0"; }

src="$FPC_TOP/selftests/bench/icount"
out="$FPC_CACHE/icount"
plugin="$out/icount.so"
loop="$out/loop"
: "${CC:=cc}"

# Compile $2 into $1 with the remaining arguments, unless $1 is newer.
compile() {
	local dst=$1 c=$2
	shift 2
	[ "$dst" -nt "$c" ] && return 0
	info "compiling $dst"
	"$CC" -Wall -Wextra "$@" -o "$dst.tmp" "$c" || die "compiling $c failed"
	mv -f "$dst.tmp" "$dst"
}

build() {
	command -v "$CC" >/dev/null ||
		die "no C compiler ($CC) on the host; run scripts/setup.sh (installs gcc) or set CC"
	mkdir -p "$out"
	compile "$plugin" "$src/icount.c" -shared -fPIC -O2
	compile "$loop" "$src/loop.c" -O1 -static
}

check() {
	local kdir=${1:-$FPC_BUILD} iters=${FPC_ICOUNT_ITERS:-10000000}
	local log marks k1 u1 k2 u2 user kernel expected
	[[ "$iters" =~ ^[1-9][0-9]*$ ]] || die "FPC_ICOUNT_ITERS: not a positive number: $iters"
	build
	# Kept when the check fails.  No spaces: vng splits --qemu-opts.
	log=$(mktemp /tmp/icount.XXXXXX.log)
	# The loop's own report goes to the terminal; the plugin's to $log.
	FPC_KVM=0 "$FPC_TOP/scripts/vm-run.sh" --cpus 1 --timeout 600 \
		--qemu-opts "-plugin $plugin -d plugin -D $log" "$kdir" -- "$loop" "$iters" ||
		die "the guest run failed (exit $?); plugin log: $log"
	# Exactly two marker lines: the loop's.  More would mean another guest
	# program executes the marker instruction.
	marks=$(grep '^icount mark=' "$log" || true)
	[ "$(grep -c . <<<"$marks")" = 2 ] ||
		die "expected 2 marker lines in the plugin log $log, got:"$'\n'"$(cat "$log")"
	read -r k1 u1 k2 u2 <<<"$(sed -E 's/^icount mark=[0-9]+ kernel=([0-9]+) user=([0-9]+)$/\1 \2/' <<<"$marks" | tr '\n' ' ')"
	[[ "$k1 $u1 $k2 $u2" =~ ^[0-9]+\ [0-9]+\ [0-9]+\ [0-9]+$ ]] ||
		die "cannot parse the marker lines in $log:"$'\n'"$marks"
	user=$((u2 - u1)) kernel=$((k2 - k1)) expected=$((3 * iters + 2))
	echo "icount window: kernel=$kernel (timer interrupts etc.)"
	# The window holds 1 mov, 3 instructions per iteration and the second
	# marker, all in one page already mapped, touching no memory: nothing
	# can make the plugin count a translation block twice or partly, and
	# interrupts are taken between blocks, before a block's counter update.
	# So the count must be exact: tolerance 0.
	if [ "$user" != "$expected" ]; then
		echo "icount check: user=$user expected=$expected FAILED (off by $((user - expected)); plugin log: $log)" >&2
		exit 1
	fi
	rm -f "$log"
	echo "icount check: user=$user expected=$expected ok"
}

case "${1:-}" in
build) [ $# = 1 ] || { usage >&2; exit 2; }; build ;;
check) [ $# -le 2 ] || { usage >&2; exit 2; }; shift; check "$@" ;;
-h|--help) usage ;;
*) usage >&2; exit 2 ;;
esac
