#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Per-patch checks of the committed series:
#   - scripts/checkpatch.pl --strict on every patch (always)
#   - with --build: the kernel builds without warnings at every step of the
#     series, in a build directory of its own ($FPC_CACHE/build/steps), with
#     scripts/check-series.config (allnoconfig plus every option whose code
#     the series touches), incrementally from one step to the next; then, on
#     the last step, make rustfmtcheck, CLIPPY=1 and rustdoc report nothing;
#     and the last step also builds without warnings where the series' hooks
#     are stubs: CONFIG_FANOTIFY_ACCESS_PERMISSIONS=n, and CONFIG_FSNOTIFY=n
#     (allnoconfig plus the filesystems, no Rust: $FPC_CACHE/build/steps-stub)
# Prints one line per patch and a summary; exits non-zero on any failure.
#
# Usage: scripts/check-series.sh [--build]
set -euo pipefail
source "$(dirname "$0")/lib.sh"

build=0
case "${1:-}" in
--build) build=1 ;;
"") ;;
*) die "usage: $0 [--build]" ;;
esac

wt=$(fpc_series_worktree)
mapfile -t commits < <(git -C "$wt" rev-list --reverse "$FPC_BASE_TAG..HEAD")
[ ${#commits[@]} -gt 0 ] || { info "series is empty"; echo "0 passed, 0 failed"; exit 0; }

pass=0 fail=0
for p in "$FPC_TOP"/patches/[0-9][0-9][0-9][0-9]-*.patch; do
	case "$(basename "$p")" in 0000-*) continue ;; esac
	# On stdin: checkpatch.pl checks a git-tracked path as a source file (-f).
	if out=$("$wt/scripts/checkpatch.pl" --strict --no-tree --quiet - <"$p" 2>&1) && [ -z "$out" ]; then
		echo "checkpatch --strict: clean  $(basename "$p")"
		pass=$((pass + 1))
	else
		echo "checkpatch --strict: ISSUES $(basename "$p")"
		echo "$out" | sed 's/^/    /'
		fail=$((fail + 1))
	fi
done

if [ $build = 1 ]; then
	out="$FPC_CACHE/build/steps"
	cfg="$FPC_TOP/scripts/check-series.config"
	mkdir -p "$out"
	mk=(make -s -C "$wt" O="$out" LLVM="$FPC_LLVM" -j"$(nproc)")
	# A step whose tree already built cleanly with this config and toolchain
	# is not built again (its line says so): only changed steps cost time.
	okfile="$out/ok-steps"
	# test.sh and export.sh --check move $wt to the whole series
	# (fpc_series_worktree): a build they overlapped is no result.
	still_at() {
		[ "$(git -C "$wt" rev-parse HEAD)" = "$(git -C "$wt" rev-parse "$1")" ] ||
			die "$wt was moved during the build of \"$2\" (another script ran fpc_series_worktree): run check-series.sh alone"
	}
	# judged STATUS LOG LINES OK-TEXT FAIL-TEXT: a build that exited with
	# STATUS and logged LOG passed if it succeeded with no warning or error
	# in the log (those are shown); prints its line (and, if it failed, the
	# last LINES of the log) and counts it.
	judged() {
		if [ "$1" = 0 ] && ! grep -E '(warning|error)[:\[]' "$2" >&2; then
			echo "$4"
			pass=$((pass + 1))
			return 0
		fi
		echo "$5"
		tail -"$3" "$2" | sed 's/^/    /'
		fail=$((fail + 1))
		return 1
	}
	key_of() { echo "$(git -C "$wt" rev-parse "$1^{tree}") $( { cat "$cfg"; echo "$FPC_LLVM"; rustc --version; } | sha256sum | cut -c1-16)"; }
	for c in "${commits[@]}"; do
		subj=$(git -C "$wt" log -1 --format=%s "$c")
		key=$(key_of "$c")
		if grep -qxF "$key" "$okfile" 2>/dev/null; then
			echo "build: ok (this tree built cleanly before)  $subj"
			pass=$((pass + 1))
			continue
		fi
		git -C "$wt" checkout -q --detach "$c"
		start=$(date +%s) st=0
		{ KCONFIG_ALLCONFIG="$cfg" "${mk[@]}" allnoconfig >"$out/step.log" 2>&1 &&
			"${mk[@]}" bzImage modules >>"$out/step.log" 2>&1; } || st=$?
		still_at "$c" "$subj"
		if judged $st "$out/step.log" 20 "build: ok ($(( $(date +%s) - start )) s)  $subj" \
			"build: FAILED  $subj"; then
			echo "$key" >>"$okfile"
		fi
	done
	# The checks below need the tree of the last step checked out and built.
	last=${commits[${#commits[@]}-1]}
	if [ "$(git -C "$wt" rev-parse HEAD)" != "$(git -C "$wt" rev-parse "$last")" ]; then
		git -C "$wt" checkout -q --detach "$last"
		KCONFIG_ALLCONFIG="$cfg" "${mk[@]}" allnoconfig >"$out/step.log" 2>&1
		"${mk[@]}" bzImage modules >>"$out/step.log" 2>&1 || die "the last step does not build any more"
	fi
	# The Rust of the whole series: rustfmt, clippy and rustdoc report nothing.
	for t in rustfmtcheck "CLIPPY=1 bzImage" rustdoc; do
		st=0
		# shellcheck disable=SC2086 # $t is a make goal plus variables
		"${mk[@]}" $t >"$out/rust.log" 2>&1 || st=$?
		judged $st "$out/rust.log" 30 "rust: ok  make $t" "rust: FAILED  make $t" || true
	done
	# The stubs: the hooks without permission events, and without fsnotify.
	stub_out="$FPC_CACHE/build/steps-stub"
	mkdir -p "$stub_out"
	for stub in FANOTIFY_ACCESS_PERMISSIONS FSNOTIFY; do
		stub_cfg="$stub_out/config-no-$stub"
		grep -v -e '^CONFIG_RUST' -e '^CONFIG_SAMPLE' -e '^CONFIG_KUNIT' -e "^CONFIG_$stub=" "$cfg" >"$stub_cfg"
		echo "# CONFIG_$stub is not set" >>"$stub_cfg"
		# Audit's watches select FSNOTIFY.
		[ $stub = FSNOTIFY ] && sed -i -e '/^CONFIG_FANOTIFY/d' -e '/^CONFIG_AUDIT/d' "$stub_cfg"
		smk=(make -s -C "$wt" O="$stub_out" LLVM="$FPC_LLVM" -j"$(nproc)")
		start=$(date +%s)
		KCONFIG_ALLCONFIG="$stub_cfg" "${smk[@]}" allnoconfig >"$stub_out/build.log" 2>&1 ||
			die "allnoconfig with $stub_cfg failed (log: $stub_out/build.log)"
		! grep -q "^CONFIG_$stub=" "$stub_out/.config" ||
			die "CONFIG_$stub is still set in $stub_out/.config (something selects it)"
		st=0
		"${smk[@]}" bzImage >>"$stub_out/build.log" 2>&1 || st=$?
		judged $st "$stub_out/build.log" 20 \
			"build: ok ($(( $(date +%s) - start )) s)  the last step with CONFIG_$stub=n" \
			"build: FAILED  the last step with CONFIG_$stub=n" || true
	done
	# The misuses of the Rust fault API that must not compile are checked by
	# scripts/rust-misuse.sh (in CI), against a kernel built with modules.
fi
echo "$pass passed, $fail failed"
[ $fail = 0 ]
