#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the test kernel: virtme-ng's defconfig + selftests/config, DWARF off,
# driver families the VM never uses trimmed.  Incremental by default.
#
# Usage: scripts/build.sh [--base | --series REV] [--bench] [--reconfig] [--apply]
#   --base      build the unpatched base tree (a worktree at the base tag)
#   --series REV  build the series as committed at git revision REV of this
#               repository (e.g. the tag series-v1): patches/ of REV applied to
#               a worktree of its own, built in build/series-<REV>; for
#               comparison runs against an older revision of the series
#   --bench     a kernel for benchmarks: without the debug options (lockdep,
#               DEBUG_VM, KUnit) of selftests/config, in <build dir>-bench
#   --reconfig  regenerate .config even if the inputs did not change
#   --apply     apply patches/ to the kernel tree first (scripts/apply.sh)
# Prints the build directory on the last line of stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

usage() { die "usage: $0 [--base | --series REV] [--bench] [--reconfig] [--apply]"; }
base=0 bench=0 reconfig=0 apply=0 series=
while [ $# -gt 0 ]; do
	case "$1" in
	--base) base=1 ;;
	--series) [ $# -ge 2 ] || usage; series=$2; shift ;;
	--bench) bench=1 ;;
	--reconfig) reconfig=1 ;;
	--apply) apply=1 ;;
	*) usage ;;
	esac
	shift
done
[ $base = 0 ] || [ -z "$series" ] || die "--base and --series exclude each other"
[ $apply = 0 ] || [ -z "$series" ] || die "--apply and --series exclude each other"

git -C "$FPC_SRC" rev-parse -q --verify "refs/tags/$FPC_BASE_TAG" >/dev/null 2>&1 ||
	die "no kernel tree at $FPC_SRC; run scripts/fetch-base.sh"
command -v virtme-configkernel >/dev/null || die "virtme-ng missing; run scripts/setup.sh"
[ -n "${RUST_LIB_SRC:-}" ] || die "rust-src missing; run scripts/setup.sh"

if [ $base = 1 ]; then
	src=$FPC_BASE_WT out=$FPC_BUILD_BASE
	if [ ! -d "$src/.git" ] && [ ! -f "$src/.git" ]; then
		info "creating base worktree $src"
		git -C "$FPC_SRC" worktree prune
		git -C "$FPC_SRC" worktree add -q --detach "$src" "$FPC_BASE_TAG"
	fi
	[ "$(git -C "$src" rev-parse HEAD)" = "$(git -C "$FPC_SRC" rev-parse "$FPC_BASE_TAG^{commit}")" ] ||
		die "$src is not at $FPC_BASE_TAG"
elif [ -n "$series" ]; then
	rev=$(git -C "$FPC_TOP" rev-parse -q --verify "$series^{commit}") ||
		die "--series $series: not a revision of $FPC_TOP"
	git -C "$FPC_TOP" cat-file -e "$rev:patches/series" 2>/dev/null ||
		die "--series $series: that revision has no patches/series"
	name=$(tr -c 'A-Za-z0-9._\n-' _ <<<"$series")
	name=${name#series-}
	src="$FPC_CACHE/linux-rev-$name" out="$FPC_CACHE/build/series-$name"
	pd=$(mktemp -d)
	trap 'rm -rf "$pd"' EXIT
	git -C "$FPC_TOP" archive "$rev" patches | tar -x -C "$pd"
	if [ ! -e "$src/.git" ]; then
		info "creating worktree $src for the series at $series"
		git -C "$FPC_SRC" worktree prune
		git -C "$FPC_SRC" worktree add -q --detach "$src" "$FPC_BASE_TAG"
	fi
	# Reuse the worktree (incremental builds) while it holds exactly that
	# series; otherwise start again from the base.
	if ! "$FPC_TOP/scripts/apply.sh" --check --patches "$pd/patches" "$src" 2>/dev/null; then
		git -C "$src" am --abort >/dev/null 2>&1 || true
		git -C "$src" checkout -q -f --detach "$FPC_BASE_TAG"
		git -C "$src" clean -q -fdx
		"$FPC_TOP/scripts/apply.sh" --patches "$pd/patches" "$src"
	fi
else
	src=$FPC_SRC out=$FPC_BUILD
	if [ $apply = 1 ]; then
		"$FPC_TOP/scripts/apply.sh" "$src"
	fi
fi
[ $bench = 0 ] || out="$out-bench"
mkdir -p "$out"

# Driver families and subsystems a 9p-rooted TCG guest never touches.
# SELinux and audit stay: the series changes security/selinux/hooks.c.
TRIM=(DRM SOUND SND USB_SUPPORT WLAN WIRELESS CFG80211 MAC80211 BT NFC WWAN
      ETHERNET NETFILTER MEDIA_SUPPORT AGP FB INPUT_JOYSTICK INPUT_TABLET
      INPUT_TOUCHSCREEN INPUT_MISC INPUT_MOUSE HID STAGING X86_PLATFORM_DEVICES
      CHROME_PLATFORMS MACINTOSH_DRIVERS HWMON THERMAL WATCHDOG NFS_FS NFSD CIFS
      PCCARD ATA MD FUSION IPV6 NET_SCHED HAMRADIO CAN INFINIBAND ISDN I2C SPI
      GPIOLIB EFI IO_URING FTRACE KPROBES UPROBES BPF_SYSCALL PROFILING
      HIBERNATION SUSPEND KEXEC CRASH_DUMP
      DEBUG_INFO_DWARF_TOOLCHAIN_DEFAULT DEBUG_INFO_DWARF4 DEBUG_INFO_DWARF5
      DEBUG_INFO_BTF KVM XEN HYPERV)

frag="$FPC_TOP/selftests/config"
if [ $bench = 1 ]; then
	grep -vE '^CONFIG_(PROVE_LOCKING|DEBUG_VM|DEBUG_ATOMIC_SLEEP|KUNIT|RUST_KERNEL_DOCTESTS)=' "$frag" >"$out/.fpc-bench-frag"
	frag="$out/.fpc-bench-frag"
fi
stamp=$( { cat "$frag"; echo "${TRIM[*]}"; echo "$FPC_LLVM"; } | sha256sum | cut -c1-16)
if [ $reconfig = 1 ] || [ ! -f "$out/.config" ] || [ "$(cat "$out/.fpc-config-stamp" 2>/dev/null)" != "$stamp" ]; then
	info "configuring $out"
	(cd "$src" && virtme-configkernel --defconfig --custom "$frag" O="$out" LLVM="$FPC_LLVM" >"$out/.fpc-configkernel.log" 2>&1) ||
		{ cat "$out/.fpc-configkernel.log" >&2; die "virtme-configkernel failed"; }
	args=()
	for o in "${TRIM[@]}"; do args+=(-d "$o"); done
	"$src/scripts/config" --file "$out/.config" "${args[@]}" -e DEBUG_INFO_NONE
	# Re-assert the fragment: the trim list must never win over it.
	while IFS= read -r l; do
		case "$l" in
		CONFIG_*=y) "$src/scripts/config" --file "$out/.config" -e "${l%%=*}" ;;
		CONFIG_*=m) "$src/scripts/config" --file "$out/.config" -m "${l%%=*}" ;;
		esac
	done <"$frag"
	make -s -C "$src" O="$out" LLVM="$FPC_LLVM" olddefconfig
	# Every option the fragment asks for must really be set.
	bad=()
	while IFS= read -r l; do
		case "$l" in CONFIG_*=*) grep -qxF "$l" "$out/.config" || bad+=("$l") ;; esac
	done <"$frag"
	# Options the series adds do not exist in the base tree: not an error there.
	missing=()
	for l in ${bad[@]+"${bad[@]}"}; do
		o=${l%%=*}
		if grep -rqx --include='Kconfig*' "config ${o#CONFIG_}" "$src"; then
			missing+=("$l")
		else
			info "$o is not defined in this tree; skipped"
		fi
	done
	[ ${#missing[@]} = 0 ] || die "options from selftests/config did not stick (missing dependency?): ${missing[*]}"
	grep -q '^CONFIG_DEBUG_INFO_NONE=y' "$out/.config" || die "DWARF is still enabled in $out/.config"
	echo "$stamp" >"$out/.fpc-config-stamp"
fi

info "building in $out"
start=$(date +%s)
make -s -C "$src" O="$out" LLVM="$FPC_LLVM" -j"$(nproc)" bzImage modules
info "build done in $(( $(date +%s) - start )) s"
echo "$out"
