#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The Rust fault API must reject its misuses at compile time (cover letter,
# "Rust"; review item R1).  Each selftests/rust-misuse/NN_*.rs holds one
# misuse, built as a small out-of-tree module after the crate root they share
# (prelude.rs); its header says what rustc must answer:
#   // expect: E0505                        that error code, and no other
#   // expect: lifetime may not live ...    that message, and no error code
#   // expect: build                        it must build (the control)
# Each is built with `make M=<scratch dir>` against a built kernel tree (the
# patched one by default), so the kernel tree is not touched.  A misuse that
# builds, fails for another reason, or a control that fails, is a failure.
# Prints one line per snippet and "N passed, N failed"; exit 1 on a failure.
#
# Usage: scripts/rust-misuse.sh [KERNEL_BUILD_DIR] [SNIPPET...]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

kdir=${1:-$FPC_BUILD}
[ $# -gt 0 ] && shift
[ -f "$kdir/rust/libkernel.rmeta" ] ||
	die "$kdir has no built Rust kernel crate (rust/libkernel.rmeta): build it first (scripts/build.sh)"
dir="$FPC_TOP/selftests/rust-misuse"
if [ $# -gt 0 ]; then snippets=("$@"); else snippets=("$dir"/[0-9][0-9]_*.rs); fi
[ -e "${snippets[0]}" ] || die "no snippets in $dir"

scratch=$(mktemp -d)
trap 'rm -rf "$scratch"' EXIT
pass=0 fail=0
for src in "${snippets[@]}"; do
	name=$(basename "$src" .rs)
	expect=$(sed -n 's,^// expect: ,,p' "$src" | head -n1)
	[ -n "$expect" ] || die "$src has no '// expect:' line"
	m="$scratch/$name"
	mkdir -p "$m"
	cat "$dir/prelude.rs" "$src" >"$m/fpc_misuse.rs"
	echo 'obj-m := fpc_misuse.o' >"$m/Kbuild"
	if make -s -C "$kdir" M="$m" LLVM="$FPC_LLVM" modules >"$m/log" 2>&1; then
		built=1
	else
		built=0
	fi
	# Every error rustc printed, but its closing summary.
	errors=$(grep -E '^error(\[E[0-9]{4}\])?: ' "$m/log" | grep -v '^error: aborting due to' | sort -u || true)
	first=$(head -n1 <<<"$errors")
	if [ "$expect" = build ]; then
		if [ $built = 1 ]; then ok=1 got="built"; else ok=0 got="did not build: ${first:-?}"; fi
	elif [ $built = 1 ]; then
		ok=0 got="BUILT: the misuse compiles"
	elif [[ $expect =~ ^E[0-9]{4}$ ]]; then
		# Only that code: an unrelated error would hide whether the API rejects the misuse.
		if [ -n "$errors" ] && ! grep -qv "^error\[$expect\]: " <<<"$errors"; then
			ok=1 got="rejected: $first"
		else
			ok=0 got="rejected otherwise: $(tr '\n' ';' <<<"$errors")"
		fi
	else
		if [ -n "$errors" ] && ! grep -qvxF "error: $expect" <<<"$errors"; then
			ok=1 got="rejected: $first"
		else
			ok=0 got="rejected otherwise: $(tr '\n' ';' <<<"$errors")"
		fi
	fi
	if [ $ok = 1 ]; then
		echo "PASS  $name: want $expect, $got"
		pass=$((pass + 1))
	else
		echo "FAIL  $name: want $expect, $got"
		sed 's/^/    /' "$m/log" | head -40
		fail=$((fail + 1))
	fi
done
echo "$pass passed, $fail failed"
[ $fail = 0 ]
