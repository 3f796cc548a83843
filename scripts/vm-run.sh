#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Boot a built kernel with virtme-ng and run one command in it as root.
# The guest sees the host's filesystem read-only (writable /tmp), so host-built
# binaries run unchanged.  Exits with the guest command's exit status.
#
# Usage: scripts/vm-run.sh [--memory SIZE] [--append ARGS] [--cpus N] [--timeout SECS]
#                          [--qemu-opts STR] <kernel-build-dir> -- <command> [args...]
# --qemu-opts STR: extra QEMU options, passed to vng as --qemu-opts=STR (vng
# splits STR like a shell, so paths in it must not contain spaces); e.g.
# "-plugin icount.so -d plugin -D LOG" (see scripts/icount.sh).
# --timeout (default $FPC_VM_TIMEOUT, else 3000 s): the whole boot is killed
# after that long, so a kernel that hangs (a deadlock the guest cannot shut
# down from) cannot stall a run; the exit status is then 124.
# KVM is used only if it has been seen to boot this kind of kernel on this
# machine (probed once, remembered in $FPC_CACHE/kvm.state); otherwise TCG.
# FPC_KVM=0|1 forces the choice.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

mem=4G append=() cpus=2 vm_timeout=${FPC_VM_TIMEOUT:-3000} qemu_opts=()
while [ $# -gt 0 ]; do
	case "$1" in
	--memory) mem=$2; shift 2 ;;
	--append) append+=(--append "$2"); shift 2 ;;
	--cpus) cpus=$2; shift 2 ;;
	--timeout) vm_timeout=$2; shift 2 ;;
	--qemu-opts) qemu_opts=("--qemu-opts=$2"); shift 2 ;;
	--) shift; break ;;
	-*) die "unknown option $1" ;;
	*) kdir=$1; shift ;;
	esac
done
[ -n "${kdir:-}" ] && [ $# -gt 0 ] || die "usage: $0 [--memory SIZE] [--append ARGS] [--cpus N] [--timeout SECS] [--qemu-opts STR] <kernel-build-dir> -- <command...>"
[[ "$vm_timeout" =~ ^[1-9][0-9]*$ ]] || die "--timeout: not a positive number of seconds: $vm_timeout"
[[ "$cpus" =~ ^[1-9][0-9]*$ ]] || die "--cpus: not a positive number: $cpus"
kdir=$(cd "$kdir" 2>/dev/null && pwd) || die "no such build directory: $kdir"
[ -f "$kdir/arch/x86/boot/bzImage" ] || die "no kernel image in $kdir (run scripts/build.sh)"
command -v vng >/dev/null || die "virtme-ng missing; run scripts/setup.sh"
command -v udevadm >/dev/null || die "udev missing on the host (vng loses guest output without it); run scripts/setup.sh"

vng_base=(vng --run "$kdir" --cpus "$cpus" --memory "$mem" "${append[@]}")

kvm_usable() {
	case "${FPC_KVM:-}" in 1) return 0 ;; 0) return 1 ;; esac
	[ -w /dev/kvm ] || return 1
	local state="$FPC_CACHE/kvm.state"
	if [ ! -f "$state" ]; then
		info "probing whether KVM can boot this kernel (once per machine)"
		if timeout 60 "${vng_base[@]}" --exec 'echo FPC-KVM-OK' </dev/null 2>&1 | cat | grep -q FPC-KVM-OK; then
			echo ok >"$state"
		else
			echo broken >"$state"
			warn "KVM cannot boot the kernel here; using TCG from now on"
		fi
	fi
	[ "$(cat "$state")" = ok ]
}
accel=()
kvm_usable || accel=(--disable-kvm)

cmd=$(printf '%q ' "$@")
marker="FPC-GUEST-EXIT"
log=$(mktemp)
console=$(mktemp)
trap 'rm -f "$log" "$console"' EXIT
# The kernel console (vng --verbose sends it to vng's stderr) goes to a file
# of its own, at loglevel 5 (warnings and worse; an oops or panic prints in
# full whatever the level): without it a kernel that dies takes its last
# words with it.  The guest command's stderr is sent to its stdout, so vng's
# stderr holds the console and vng's own messages only.  The console is
# printed when the guest did not report an exit status.
# Pipe through cat: vng garbles output written straight to a file.
boot() {
	set +e
	timeout --kill-after=30 "$vm_timeout" "${vng_base[@]}" "${accel[@]}" --verbose --append loglevel=5 \
		--exec "cd / && { $cmd; } 2>&1; echo $marker=\$?" ${qemu_opts[@]+"${qemu_opts[@]}"} </dev/null 2>"$console" |
		cat | tee "$log" | grep --line-buffered -v "^$marker="
	vng_rc=${PIPESTATUS[0]}
	if [ "$vng_rc" = 124 ] || [ "$vng_rc" = 137 ]; then
		show_console
		echo "vm-run.sh: error: the VM ran longer than $vm_timeout s and was killed (a hung kernel?)" >&2
		exit 124
	fi
	set -e
}
# The console from the kernel's own start (the decompressor's lines before it
# are noise; if the kernel never started, vng's messages are all there is),
# at most its last 300 lines.
show_console() {
	echo "vm-run.sh: vng's stderr and the guest kernel's console (loglevel 5; last 300 lines):" >&2
	if grep -q 'Linux version' "$console"; then
		sed -n '/Linux version/,$p' "$console"
	else
		cat "$console"
	fi | tail -n 300 >&2
}
boot
# A boot that printed nothing at all ran nothing: try once more (seen once,
# right after a kernel build, never reproduced).  Anything the guest printed
# counts as a run.
if [ ! -s "$log" ]; then
	warn "vng exited with $vng_rc and no output at all; booting once more"
	boot
fi
rc=$(sed -n "s/^$marker=\([0-9]*\).*/\1/p" "$log" | tail -n1)
if [ -z "$rc" ]; then
	show_console
	die "the guest did not report an exit status (vng exited with $vng_rc; boot failure or crash; see the console above)"
fi
exit "$rc"
