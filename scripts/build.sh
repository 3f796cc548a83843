#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Build the test kernel: virtme-ng's defconfig + selftests/config, DWARF off,
# driver families the VM never uses trimmed.  Incremental by default.
#
# Usage: scripts/build.sh [--base] [--bench] [--reconfig] [--apply]
#   --base      build the unpatched base tree (a worktree at the base tag)
#   --bench     a kernel for benchmarks: without the debug options (lockdep,
#               DEBUG_VM, KUnit) of selftests/config, in <build dir>-bench
#   --reconfig  regenerate .config even if the inputs did not change
#   --apply     apply patches/ to the kernel tree first (scripts/apply.sh)
# Prints the build directory on the last line of stdout.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

base=0 bench=0 reconfig=0 apply=0
for a in "$@"; do
	case "$a" in
	--base) base=1 ;;
	--bench) bench=1 ;;
	--reconfig) reconfig=1 ;;
	--apply) apply=1 ;;
	*) die "usage: $0 [--base] [--bench] [--reconfig] [--apply]" ;;
	esac
done

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
