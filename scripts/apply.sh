#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Apply the series in patches/ (order from patches/series) to a kernel tree.
#
# Usage: scripts/apply.sh [--check] [--patches DIR] <kernel-tree>
#   --patches DIR   apply the series in DIR (with its own series file) instead
#                   of the repository's patches/ (build.sh --series uses it)
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

check=0 pdir="$top/patches"
while [ $# -gt 1 ]; do
	case "$1" in
	--check) check=1; shift ;;
	--patches) pdir=$(cd "$2" 2>/dev/null && pwd) || die "no such directory: $2"; shift 2 ;;
	*) break ;;
	esac
done
[ $# = 1 ] || die "usage: $0 [--check] [--patches DIR] <kernel-tree>"
tree=$(cd "$1" 2>/dev/null && pwd) || die "no such directory: $1"
[ -f "$tree/Makefile" ] && [ -d "$tree/fs/notify" ] || die "$tree does not look like a kernel tree"

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
else
	mode=plain
	fwd() { patch -d "$tree" -p1 -s -f -F0 --dry-run <"$1" >/dev/null 2>&1; }
fi

# How many leading patches are already in the tree?  Applied patches must be a
# prefix of the series: anything else is a mixed tree we will not touch.
reverse_prefix() { # i: print patches i-1 .. 0
	local k
	for ((k = $1 - 1; k >= 0; k--)); do echo "${patches[$k]}"; done
}
n=${#patches[@]} done_n=0
if [ $mode = git ]; then
	# A patch is applied when a recent commit has its patch-id (git am and
	# format-patch keep it).  The applied ones must be a prefix.
	recent=$(git -C "$tree" log -n $((n + 200)) -p --no-color --format='commit %H' 2>/dev/null |
		git patch-id --stable | awk '{print $1}')
	mixed=0
	for ((i = 0; i < n; i++)); do
		id=$(git patch-id --stable <"${patches[$i]}" | awk '{print $1}')
		if grep -qxF "$id" <<<"$recent"; then
			[ $done_n = "$i" ] && done_n=$((i + 1)) || mixed=1
		fi
	done
	[ $mixed = 0 ] || die "$tree has some patches of the series but not a prefix of it; fix it by hand"
else
	for ((i = n; i >= 1; i--)); do
		mapfile -t rev_list < <(reverse_prefix "$i")
		# patch(1) takes one patch at a time: reverse-apply the prefix,
		# last patch first, to a scratch copy of the files it touches.
		tmpd=$(mktemp -d)
		ok=1
		sed -n 's|^+++ b/||p; s|^--- a/||p' "${rev_list[@]}" | sort -u | while read -r f; do
			[ -e "$tree/$f" ] || continue
			mkdir -p "$tmpd/$(dirname "$f")" && cp "$tree/$f" "$tmpd/$f"
		done
		for p in "${rev_list[@]}"; do
			patch -d "$tmpd" -p1 -s -f -F0 -R <"$p" >/dev/null 2>&1 || { ok=0; break; }
		done
		rm -rf "$tmpd"
		[ $ok = 1 ] && { done_n=$i; break; }
	done
fi
if [ $mode = plain ] && [ $done_n -gt 0 ] && fwd "${patches[0]}"; then
	done_n=0 # the first patch still applies forward: the match was a coincidence
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
		if ! out=$(patch -d "$tree" -p1 -f -F0 --dry-run <"$p" 2>&1); then
			files=$(awk '/^(patching|checking) file /{f=$3} /FAILED|malformed|can.t find file/{print f}' <<<"$out" | sort -u | tr '\n' ' ')
			for ((k = ${#applied[@]} - 1; k >= 0; k--)); do
				patch -d "$tree" -p1 -s -f -F0 -R <"${applied[$k]}" >/dev/null
			done
			echo "$out" >&2
			die "patch $(basename "$p") does not apply; conflict in: ${files:-unknown}. Tree left unchanged."
		fi
		patch -d "$tree" -p1 -s -f -F0 <"$p" >/dev/null
		applied+=("$p")
	done
fi
say "applied ${#rest[@]} patch(es) to $tree ($mode)"
