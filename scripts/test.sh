#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# From nothing to "suite run in the VM": set up the machine, fetch the base,
# put the kernel tree at exactly base + committed series, build (incremental
# when warm), build the tests, boot once and run them all.
#
# Usage: scripts/test.sh [--base] [--strict|--lenient] [-- fpc-tests args...]
#   --base     test the unpatched base kernel instead (new tests must TCONF/fail);
#              lenient unless --strict is given too (then it must fail)
#   --strict   every TCONF not in selftests/tconf-allow.txt counts as failed
#              (the default without --base)
#   --lenient  TCONF counts as skipped (exploratory runs); the number is printed
set -euo pipefail
source "$(dirname "$0")/lib.sh"

base=0
mode=
while [ $# -gt 0 ]; do
	case "$1" in
	--base) base=1; shift ;;
	--strict) mode=--strict; shift ;;
	--lenient) mode=--lenient; shift ;;
	--) shift; break ;;
	*) die "usage: $0 [--base] [--strict|--lenient] [-- fpc-tests args...]" ;;
	esac
done
if [ -z "$mode" ]; then
	if [ $base = 1 ]; then mode=--lenient; else mode=--strict; fi
fi

"$FPC_TOP/scripts/setup.sh"
"$FPC_TOP/scripts/fetch-base.sh"
if [ $base = 1 ]; then
	kdir=$("$FPC_TOP/scripts/build.sh" --base | tail -n1)
else
	# The tree must hold exactly the committed series: build what is in git,
	# not whatever a developer left in the cache tree.
	wt=$(fpc_series_worktree)
	want=$(git -C "$wt" rev-parse HEAD)
	# Uncommitted edits would be built and tested in place of the
	# committed series: refuse them, also when HEAD already matches.
	[ -z "$(git -C "$FPC_SRC" status --porcelain --untracked-files=no)" ] ||
		die "$FPC_SRC has uncommitted changes; commit (and export) or stash them"
	if [ "$(git -C "$FPC_SRC" rev-parse HEAD^{tree})" != "$(git -C "$wt" rev-parse HEAD^{tree})" ]; then
		if [ "$(git -C "$FPC_SRC" rev-parse HEAD)" = "$(git -C "$FPC_SRC" rev-parse "$FPC_BASE_TAG^{commit}")" ]; then
			info "kernel tree is at the base: checking out base + committed series"
		else
			warn "kernel tree is not at base + committed series; checking out $want (branches are untouched)"
		fi
		git -C "$FPC_SRC" checkout -q --detach "$want"
	fi
	kdir=$("$FPC_TOP/scripts/build.sh" | tail -n1)
fi
info "fpc-tests ${mode#--} mode"
make -C "$FPC_TOP/selftests" run KERNEL="$kdir" MODE="$mode" ARGS="$*"
