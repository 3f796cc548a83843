#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Fetch Debian's linux-source-7.3 into the cache and turn it into a git tree
# whose first commit is tagged $FPC_BASE_TAG, so the series can be applied with
# `git am` and regenerated with `git format-patch`.
#
# Usage: scripts/fetch-base.sh [--force]
#   --force  re-create the tree even if it exists (local commits are lost)
set -euo pipefail
source "$(dirname "$0")/lib.sh"

force=0
case "${1:-}" in
--force) force=1 ;;
"") ;;
*) die "usage: $0 [--force]" ;;
esac

[ -f "$FPC_APT/sources.list" ] || die "run scripts/setup.sh first (no private apt lists in $FPC_APT)"

if [ $force = 0 ] && git -C "$FPC_SRC" rev-parse -q --verify "refs/tags/$FPC_BASE_TAG" >/dev/null 2>&1; then
	have=$(git -C "$FPC_SRC" tag -l --format='%(contents:subject)' "$FPC_BASE_TAG")
	info "base tree exists: $FPC_SRC ($have)"
	case "$have" in
	*"$FPC_BASE_PKG $FPC_BASE_VERSION"*) ;;
	*) warn "base tree is not the pinned $FPC_BASE_PKG $FPC_BASE_VERSION; use --force to re-create it" ;;
	esac
	exit 0
fi

versions=$(fpc_apt_versions "$FPC_BASE_PKG")
[ -n "$versions" ] || die "the archive offers no $FPC_BASE_PKG in $FPC_BACKPORTS_SUITE"
if grep -qxF "$FPC_BASE_VERSION" <<<"$versions"; then
	ver=$FPC_BASE_VERSION
else
	ver=$(sort -V <<<"$versions" | tail -n1)
	warn "pinned $FPC_BASE_PKG $FPC_BASE_VERSION is no longer offered; using $ver (patches may not apply)"
fi

dl="$FPC_CACHE/dl"
mkdir -p "$dl"
deb=$(ls "$dl"/"${FPC_BASE_PKG}_${ver//:/%3a}"_*.deb 2>/dev/null | head -n1 || true)
if [ -z "$deb" ]; then
	info "downloading $FPC_BASE_PKG=$ver"
	(cd "$dl" && fpc_apt_private download -qq "$FPC_BASE_PKG=$ver") || die "download of $FPC_BASE_PKG=$ver failed"
	deb=$(ls "$dl"/"${FPC_BASE_PKG}"_*.deb | head -n1)
fi

info "unpacking $(basename "$deb")"
tmp="$FPC_CACHE/unpack.$$"
rm -rf "$tmp" && mkdir -p "$tmp"
trap 'rm -rf "$tmp"' EXIT
dpkg-deb --fsys-tarfile "$deb" | tar -x -C "$tmp" --wildcards './usr/src/*.tar.xz'
tarball=$(ls "$tmp"/usr/src/*.tar.xz | head -n1)
[ -f "$tarball" ] || die "no source tarball inside $deb"
rm -rf "$FPC_SRC.new" && mkdir -p "$FPC_SRC.new"
tar -xJf "$tarball" -C "$FPC_SRC.new" --strip-components=1
[ -f "$FPC_SRC.new/Makefile" ] || die "unpacked tree has no Makefile"

info "creating git tree"
git -C "$FPC_SRC.new" init -q -b fpc-base-branch
git -C "$FPC_SRC.new" config gc.auto 0
git -C "$FPC_SRC.new" add -A -f .
kv=$(make -s -C "$FPC_SRC.new" kernelversion 2>/dev/null || echo unknown)
# Fixed identity and dates: the same source gives the same base commit id on
# every machine, so "base-commit:" in the exported patches is reproducible.
fpc_base_commit "$FPC_SRC.new" "Linux $kv ($FPC_BASE_PKG $ver)" \
	"Unpacked from Debian's $FPC_BASE_PKG $ver source tarball."
git -C "$FPC_SRC.new" tag -a -m "$FPC_BASE_PKG $ver (Linux $kv)" "$FPC_BASE_TAG"
git -C "$FPC_SRC.new" checkout -q -b work
rm -rf "$FPC_SRC" && mv "$FPC_SRC.new" "$FPC_SRC"
info "base tree ready: $FPC_SRC at tag $FPC_BASE_TAG (Linux $kv, $FPC_BASE_PKG $ver)"
