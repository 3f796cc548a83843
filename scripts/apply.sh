#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Apply the series in patches/ (order from patches/series) to a kernel tree.
#
# Usage: scripts/apply.sh [--check] <kernel-tree>
#   git tree:        git am -3; a dirty tree is refused
#   plain directory: patch -p1
# Patches already present (their reverse applies cleanly) are skipped, so
# running it twice is harmless.  On a conflict the patch and file are named and
# the tree is left as it was before this run.  --check only reports whether
# the series is applied, applicable or conflicting.
set -euo pipefail
top=$(cd "$(dirname "$0")/.." && pwd)
die() { echo "apply.sh: error: $*" >&2; exit 1; }
say() { echo "apply.sh: $*" >&2; }

check=0
[ "${1:-}" = --check ] && { check=1; shift; }
[ $# = 1 ] || die "usage: $0 [--check] <kernel-tree>"
tree=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
[ -f "$tree/Makefile" ] && [ -d "$tree/fs/notify" ] || die "$tree does not look like a kernel tree"

pdir="$top/patches"
[ -f "$pdir/series" ] || die "missing $pdir/series"
patches=()
while read -r p _; do
	case "$p" in ''|'#'*) continue ;; esac
	[ -f "$pdir/$p" ] || die "patches/series names $p, which does not exist"
	patches+=("$pdir/$p")
done <"$pdir/series"
[ ${#patches[@]} -gt 0 ] || { say "series is empty: nothing to apply"; exit 0; }

if git -C "$tree" rev-parse --is-inside-work-tree >/dev/null 2>&1 &&
   [ "$(git -C "$tree" rev-parse --show-toplevel)" = "$tree" ]; then
	mode=git
	[ -z "$(git -C "$tree" status --porcelain --untracked-files=no)" ] ||
		die "$tree has uncommitted changes; commit or stash them first"
	[ ! -d "$(git -C "$tree" rev-parse --git-path rebase-apply)" ] ||
		die "$tree has a git am/rebase in progress"
	fwd() { git -C "$tree" apply --check "$1" 2>/dev/null; }
	rev() { git -C "$tree" apply --check -R "$1" 2>/dev/null; }
else
	mode=plain
	fwd() { patch -d "$tree" -p1 -s -f --dry-run <"$1" >/dev/null 2>&1; }
	rev() { patch -d "$tree" -p1 -s -f -R --dry-run <"$1" >/dev/null 2>&1; }
fi

# How many leading patches are already in the tree?  A patch counts as applied
# when it reverse-applies and does not forward-apply.  Applied patches must be
# a prefix of the series: anything else is a mixed tree we will not touch.
# The reverse check is done on the whole prefix from the end backwards, so each
# patch is tested on the tree as it was right after it.
n=${#patches[@]} done_n=0
for ((i = n; i >= 1; i--)); do
	if [ $mode = git ]; then
		if git -C "$tree" apply --check -R "${patches[@]:0:$i}" >/dev/null 2>&1; then
			done_n=$i; break
		fi
	else
		ok=1
		tmpd=$(mktemp -d); trap 'rm -rf "$tmpd"' EXIT
		cat $(printf '%s\n' "${patches[@]:0:$i}" | tac) >/dev/null
		# plain trees: test each patch of the prefix in reverse order on a
		# scratch copy of the touched files only
		files=$(sed -n 's|^+++ b/||p; s|^--- a/||p' "${patches[@]:0:$i}" | sort -u)
		for f in $files; do
			[ -e "$tree/$f" ] && mkdir -p "$tmpd/$(dirname "$f")" && cp "$tree/$f" "$tmpd/$f"
		done
		for ((j = i - 1; j >= 0; j--)); do
			patch -d "$tmpd" -p1 -s -f -R <"${patches[$j]}" >/dev/null 2>&1 || { ok=0; break; }
		done
		rm -rf "$tmpd"
		[ $ok = 1 ] && { done_n=$i; break; }
	fi
done
if [ $done_n -gt 0 ] && fwd "${patches[0]}"; then
	done_n=0 # forward still applies: the reverse match was a coincidence
fi

if [ $check = 1 ]; then
	if [ $done_n = "$n" ]; then say "series is applied ($n patches)"; exit 0; fi
	say "$done_n of $n patches applied"; exit 1
fi
if [ $done_n = "$n" ]; then
	say "series already applied to $tree ($n patches): nothing to do"
	exit 0
fi
[ $done_n = 0 ] || say "first $done_n patches already applied; applying the rest"
rest=("${patches[@]:$done_n}")

if [ $mode = git ]; then
	ident=()
	git -C "$tree" config user.email >/dev/null || ident+=(-c user.email=apply@localhost)
	git -C "$tree" config user.name >/dev/null || ident+=(-c user.name=apply.sh)
	log=$(mktemp)
	if ! git -C "$tree" "${ident[@]}" am -3 --keep-cr "${rest[@]}" >"$log" 2>&1; then
		failed=$(sed -n 's/^Patch failed at \([0-9]*\) \(.*\)/\1 \2/p' "$log" | head -n1)
		files=$(sed -n -e 's/^CONFLICT ([^)]*): .* in \(.*\)$/\1/p' \
			-e 's/^error: patch failed: \([^:]*\):.*/\1/p' \
			-e 's/^error: \([^:]*\): does not exist in index/\1/p' \
			-e 's/^error: \([^:]*\): patch does not apply/\1/p' "$log" | sort -u | tr '\n' ' ')
		idx=$(( 10#${failed%% *} - 1 ))
		name=$(basename "${rest[$idx]:-unknown}")
		cat "$log" >&2
		git -C "$tree" am --abort >/dev/null 2>&1 || true
		rm -f "$log"
		die "patch $name (${failed#* }) does not apply; conflict in: ${files:-unknown}. Tree left unchanged."
	fi
	rm -f "$log"
else
	applied=()
	for p in "${rest[@]}"; do
		if ! out=$(patch -d "$tree" -p1 -f --dry-run <"$p" 2>&1); then
			files=$(awk '/^(patching|checking) file /{f=$3} /FAILED|malformed|can.t find file/{print f}' <<<"$out" | sort -u | tr '\n' ' ')
			for ((k = ${#applied[@]} - 1; k >= 0; k--)); do
				patch -d "$tree" -p1 -s -f -R <"${applied[$k]}" >/dev/null
			done
			echo "$out" >&2
			die "patch $(basename "$p") does not apply; conflict in: ${files:-unknown}. Tree left unchanged."
		fi
		patch -d "$tree" -p1 -s -f <"$p" >/dev/null
		applied+=("$p")
	done
fi
say "applied ${#rest[@]} patch(es) to $tree ($mode)"
