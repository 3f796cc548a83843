# SPDX-License-Identifier: GPL-2.0
# Common settings for the project scripts. Source it; do not run it.
#
# Everything large (kernel source, build trees, toolchains, venvs) lives in
# $FPC_CACHE, outside the repository.  Override any of these in the
# environment.

FPC_TOP=$(cd "$(dirname "${BASH_SOURCE[0]}")/.." && pwd)
: "${FPC_CACHE:=${XDG_CACHE_HOME:-$HOME/.cache}/fanotify-prefault}"
: "${FPC_LLVM:=-22}"
# The tested base.  fetch-base.sh falls back (with a warning) to the newest
# linux-source-7.3 the archive offers when this exact version is gone.
: "${FPC_BASE_PKG:=linux-source-7.3}"
: "${FPC_BASE_VERSION:=7.3.4-1~bpo13+1}"
: "${FPC_BACKPORTS_SUITE:=trixie-backports}"
: "${FPC_BINDGEN_VERSION:=0.73.2}"
: "${FPC_VNG_VERSION:=1.42}"
# Identity of the series' commits and of the exported cover letter.
: "${FPC_IDENT_NAME:=fanotify-prefault developers}"
: "${FPC_IDENT_EMAIL:=fpc-dev@localhost}"

FPC_SRC="$FPC_CACHE/linux"            # the persistent kernel git tree
FPC_BUILD="$FPC_CACHE/build/patched"  # O= for the patched kernel
FPC_BUILD_BASE="$FPC_CACHE/build/base"
FPC_BASE_WT="$FPC_CACHE/linux-base"   # worktree at the base tag
FPC_TOOLS="$FPC_CACHE/tools"
FPC_APT="$FPC_CACHE/apt"
FPC_BASE_TAG=fpc-base

export PATH="$FPC_TOOLS/venv/bin:$FPC_TOOLS/cargo/bin:$PATH"
export LIBCLANG_PATH="${LIBCLANG_PATH:-/usr/lib/llvm${FPC_LLVM}/lib}"
if [ -f "$FPC_TOOLS/rust-src.path" ]; then
	RUST_LIB_SRC=$(cat "$FPC_TOOLS/rust-src.path")
	export RUST_LIB_SRC
fi

die() { echo "error: $*" >&2; exit 1; }
warn() { echo "warning: $*" >&2; }
info() { echo ">>> $*" >&2; }

# apt-get restricted to a private source list for the newer suite, used only
# for "download", so the host never installs from it.
fpc_apt_private() {
	apt-get -o Dir::Etc::SourceList="$FPC_APT/sources.list" \
		-o Dir::Etc::SourceParts="$FPC_APT/sources.list.d" \
		-o Dir::State::Lists="$FPC_APT/lists" \
		-o Dir::Cache="$FPC_APT/cache" \
		-o Dir::Etc::Preferences="$FPC_APT/preferences" \
		-o Dir::Etc::PreferencesParts="$FPC_APT/preferences.d" \
		-o Debug::NoLocking=1 -o APT::Sandbox::User=root "$@"
}

# The Debian archive URI this machine already uses (from its own apt sources).
fpc_archive_uri() {
	local uri
	uri=$(grep -hs -A3 '^Types:.*deb' /etc/apt/sources.list.d/*.sources |
	      awk '/^URIs:/ {u=$2} /^Suites:/ && / bookworm( |$)|: *bookworm( |$)/ && u {print u; exit}')
	if [ -z "$uri" ]; then
		uri=$(awk '$1=="deb" && $0 ~ / (bookworm|trixie|sid|stable) / {for (i=2;i<=NF;i++) if ($i ~ /^[a-z]+:\/\//) {print $i; exit}}' \
		      /etc/apt/sources.list /etc/apt/sources.list.d/*.list 2>/dev/null | head -n1)
	fi
	[ -n "$uri" ] || die "cannot find a Debian archive URI in the machine's apt sources"
	echo "$uri"
}

# Versions of package $1 the private backports lists offer, one a line.
fpc_apt_versions() {
	apt-cache -o Dir::Etc::SourceList="$FPC_APT/sources.list" \
		-o Dir::Etc::SourceParts="$FPC_APT/sources.list.d" \
		-o Dir::State::Lists="$FPC_APT/lists" -o Dir::Cache="$FPC_APT/cache" \
		madison "$1" 2>/dev/null | awk '{print $3}'
}

# Commit the whole tree in $1 with a reproducible identity and date.
fpc_base_commit() {
	GIT_AUTHOR_NAME="fanotify-prefault base" GIT_AUTHOR_EMAIL="base@localhost" \
	GIT_COMMITTER_NAME="fanotify-prefault base" GIT_COMMITTER_EMAIL="base@localhost" \
	GIT_AUTHOR_DATE="2026-01-01T00:00:00Z" GIT_COMMITTER_DATE="2026-01-01T00:00:00Z" \
		git -C "$1" commit -q -m "$2" -m "$3"
}

# A worktree at the base with exactly the committed series applied (git am);
# prints its path.  Reused between runs.
fpc_series_worktree() {
	local wt="$FPC_CACHE/linux-series" scratch="$FPC_CACHE/linux-series-apply" d
	for d in "$wt" "$scratch"; do
		if [ ! -e "$d/.git" ]; then
			git -C "$FPC_SRC" worktree prune
			git -C "$FPC_SRC" worktree add -q --detach "$d" "$FPC_BASE_TAG" >&2
		fi
	done
	# Apply in a scratch worktree, then move $wt to the result: git rewrites
	# only the files that differ, so builds in $wt stay incremental.
	git -C "$scratch" am --abort >/dev/null 2>&1 || true
	git -C "$scratch" checkout -q -f --detach "$FPC_BASE_TAG" >&2
	git -C "$scratch" clean -q -fdx >&2
	"$FPC_TOP/scripts/apply.sh" "$scratch" >&2
	git -C "$wt" am --abort >/dev/null 2>&1 || true
	git -C "$wt" checkout -q -f --detach "$(git -C "$scratch" rev-parse HEAD)" >&2
	git -C "$wt" clean -q -fdx >&2
	echo "$wt"
}

# fpc_plot_venv: the Python of the benchmark plots (scripts/bench-plot.py),
# matplotlib from PyPI in a venv of its own, installed when missing; sets
# FPC_PLOT_PYTHON.
fpc_plot_venv() {
	local venv="$FPC_TOOLS/plot-venv" mpl_version=3.10.8
	if ! "$venv/bin/python" -c "import matplotlib, sys; sys.exit(matplotlib.__version__ != '$mpl_version')" 2>/dev/null; then
		info "pip install matplotlib==$mpl_version (venv $venv)"
		python3 -m venv "$venv" || die "python3 -m venv failed (python3-venv missing? run scripts/setup.sh)"
		"$venv/bin/pip" install -q "matplotlib==$mpl_version" || die "pip install matplotlib failed"
	fi
	FPC_PLOT_PYTHON="$venv/bin/python"
}

# fpc_bench_kernels: the kernels of a benchmark in $patched and $base (the
# callers' variables): given ones must have an image; empty ones get the
# default bench build directories, built (setup, base, apply, build --bench)
# when missing.  Warns about a debug config, and makes both paths absolute.
fpc_bench_kernels() {
	local build=() k
	if [ -z "$patched" ]; then
		patched="$FPC_BUILD-bench"
		[ -f "$patched/arch/x86/boot/bzImage" ] || build+=(patched)
	fi
	if [ -z "$base" ]; then
		base="$FPC_BUILD_BASE-bench"
		[ -f "$base/arch/x86/boot/bzImage" ] || build+=(base)
	fi
	if [ ${#build[@]} -gt 0 ]; then
		"$FPC_TOP/scripts/setup.sh"
		"$FPC_TOP/scripts/fetch-base.sh"
	fi
	for k in ${build[@]+"${build[@]}"}; do
		info "building the $k bench kernel"
		if [ "$k" = patched ]; then
			"$FPC_TOP/scripts/apply.sh" "$FPC_SRC"
			"$FPC_TOP/scripts/build.sh" --bench >/dev/null
		else
			"$FPC_TOP/scripts/build.sh" --bench --base >/dev/null
		fi
	done
	for k in "$patched" "$base"; do
		[ -f "$k/arch/x86/boot/bzImage" ] || die "no kernel image in $k"
		if grep -qE '^CONFIG_(PROVE_LOCKING|DEBUG_VM|KASAN)=y' "$k/.config" 2>/dev/null; then
			warn "$k is a debug kernel (PROVE_LOCKING/DEBUG_VM/KASAN): the results are not representative"
		fi
	done
	patched=$(cd "$patched" && pwd)
	base=$(cd "$base" && pwd)
}
