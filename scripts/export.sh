#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The kernel tree is where the series is edited; this script regenerates the
# repository's copies from it:
#   patches/NNNN-*.patch + patches/series   git format-patch fpc-base..HEAD
#   patches/0000-cover-letter.patch         its text is kept, its shortlog,
#                                           diffstat and base-commit regenerated
#   rust/<path>                             every Rust file the series adds or
#                                           changes (samples/rust/ included)
#   Kconfig.snippet, MAINTAINERS.snippet    the lines the series adds there
#
# Usage: scripts/export.sh [--tree DIR]      export from DIR (default: the cache tree)
#        scripts/export.sh --check           apply patches/ to a scratch worktree at
#                                           the base, export from it, and fail if
#                                           anything differs from what is committed
set -euo pipefail
source "$(dirname "$0")/lib.sh"

check=0 tree=$FPC_SRC
while [ $# -gt 0 ]; do
	case "$1" in
	--check) check=1; shift ;;
	--tree) tree=$2; shift 2 ;;
	*) die "usage: $0 [--tree DIR] | --check" ;;
	esac
done
git -C "$FPC_SRC" rev-parse -q --verify "refs/tags/$FPC_BASE_TAG" >/dev/null 2>&1 ||
	die "no base tree at $FPC_SRC; run scripts/fetch-base.sh"

# export_to TREE OUTDIR: write patches/, rust/ and the snippets of TREE's
# series into OUTDIR.
export_to() {
	local t=$1 out=$2 n
	mkdir -p "$out/patches" "$out/rust"
	n=$(git -C "$t" rev-list --count "$FPC_BASE_TAG..HEAD")
	{
		echo "# The series, in order (git format-patch names). Applied by scripts/apply.sh."
		if [ "$n" -gt 0 ]; then
			# Fixed identity: the cover letter's From: is the exporter's.
			git -C "$t" -c user.name="$FPC_IDENT_NAME" -c user.email="$FPC_IDENT_EMAIL" \
				format-patch --zero-commit --no-signature --base="$FPC_BASE_TAG" \
				--cover-letter -o "$out/patches" "$FPC_BASE_TAG..HEAD" |
				xargs -n1 basename | grep -v '^0000-'
		fi
	} >"$out/patches/series"
	[ "$n" -gt 0 ] || return 0

	# Cover letter: keep the committed subject and text, take the generated
	# shortlog, diffstat and base-commit.
	local gen="$out/patches/0000-cover-letter.patch" cur="$FPC_TOP/patches/0000-cover-letter.patch"
	if [ -f "$cur" ]; then
		python3 - "$cur" "$gen" <<-'PY'
		import re, sys
		cur, gen = (open(p).read() for p in sys.argv[1:3])
		def split(text):
		    head, _, body = text.partition("\n\n")
		    m = re.search(r"^[^\s].* \(\d+\):$", body, re.M)   # first shortlog author line
		    return head, body[:m.start()] if m else body, body[m.start():] if m else ""
		ch, cb, _ = split(cur)
		gh, _, gtail = split(gen)
		title = re.search(r"^Subject: \[PATCH[^\]]*\] (.*)$", ch, re.M).group(1)
		gh = re.sub(r"^(Subject: \[PATCH[^\]]*\] ).*$", lambda m: m.group(1) + title, gh, flags=re.M)
		# The generated From:/Date: are "now" and the exporter: keep the committed ones.
		for field in ("From", "Date"):
		    pat = r"^%s: .*(?:\n[ \t].*)*" % field    # with folded lines
		    m = re.search(pat, ch, re.M)
		    if m:
		        gh = re.sub(pat, lambda _: m.group(0), gh, count=1, flags=re.M)
		open(sys.argv[2], "w").write(gh + "\n\n" + cb + gtail)
		PY
	fi

	# Rust sources of the series, as files.
	git -C "$t" diff --name-only --diff-filter=AM "$FPC_BASE_TAG..HEAD" -- 'rust/*' 'samples/rust/*' |
	while read -r f; do
		local dst="$out/rust/${f#rust/}"
		mkdir -p "$(dirname "$dst")"
		cp "$t/$f" "$dst"
	done

	# Kconfig entries and MAINTAINERS records the series adds.
	snippet() {
		git -C "$t" diff --no-color -U0 "$FPC_BASE_TAG..HEAD" -- "$@" | awk '
			/^\+\+\+ b\// { f = substr($0, 7); next }
			/^\+/ { if (f != last) { if (last != "") print ""; print "# " f; last = f } print substr($0, 2) }'
	}
	snippet '*Kconfig' '*Kconfig.*' >"$out/Kconfig.snippet"
	snippet MAINTAINERS >"$out/MAINTAINERS.snippet"
	[ -s "$out/Kconfig.snippet" ] || echo "# The series adds no Kconfig entries." >"$out/Kconfig.snippet"
	[ -s "$out/MAINTAINERS.snippet" ] || echo "# The series adds no MAINTAINERS records." >"$out/MAINTAINERS.snippet"
}

if [ $check = 0 ]; then
	[ -z "$(git -C "$tree" status --porcelain --untracked-files=no)" ] ||
		die "$tree has uncommitted changes: commit them in the kernel tree first"
	tmp=$(mktemp -d)
	trap 'rm -rf "$tmp"' EXIT
	export_to "$tree" "$tmp"
	rm -rf "$FPC_TOP/patches" "$FPC_TOP/rust"
	mkdir -p "$FPC_TOP/rust"
	cp -r "$tmp/patches" "$FPC_TOP/patches"
	[ -z "$(ls -A "$tmp/rust")" ] || cp -r "$tmp/rust/." "$FPC_TOP/rust/"
	[ -f "$tmp/Kconfig.snippet" ] && cp "$tmp/Kconfig.snippet" "$tmp/MAINTAINERS.snippet" "$FPC_TOP/"
	info "exported $(grep -vc '^#' "$FPC_TOP/patches/series" || true) patch(es) from $tree"
	exit 0
fi

# --check: rebuild the tree from the committed patches, export, compare.
wt=$(fpc_series_worktree)
tmp=$(mktemp -d)
trap 'rm -rf "$tmp"' EXIT
export_to "$wt" "$tmp"
[ -f "$tmp/Kconfig.snippet" ] || {
	echo "# The series adds no Kconfig entries." >"$tmp/Kconfig.snippet"
	echo "# The series adds no MAINTAINERS records." >"$tmp/MAINTAINERS.snippet"
}
mkdir -p "$tmp/want" && cp -r "$tmp/patches" "$tmp/rust" "$tmp/Kconfig.snippet" "$tmp/MAINTAINERS.snippet" "$tmp/want/"
mkdir -p "$tmp/have/rust"
cp -r "$FPC_TOP/patches" "$tmp/have/"
[ -d "$FPC_TOP/rust" ] && cp -r "$FPC_TOP/rust/." "$tmp/have/rust/"
for f in Kconfig.snippet MAINTAINERS.snippet; do
	[ -f "$FPC_TOP/$f" ] && cp "$FPC_TOP/$f" "$tmp/have/"
done
if ! diff -ru "$tmp/have" "$tmp/want" >"$tmp/diff"; then
	cat "$tmp/diff" >&2
	die "committed patches/, rust/ or snippets differ from what the series regenerates (run scripts/export.sh)"
fi
info "export check passed: patches/, rust/ and snippets agree with the series"
