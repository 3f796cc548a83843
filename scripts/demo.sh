#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The main job: set up, apply the series to the base, build, boot the patched
# kernel once and
#  1. show pre-content events on a lazily filled 1 MiB file, mmap-time vs
#     fault-time (fpc-demo);
#  2. run `rustc --version` from a remote-backed lazy copy of this machine's
#     rustup toolchain: nginx in the guest serves the toolchain (on the
#     guest's tmpfs) over a link shaped with netem on lo (10 ms RTT /
#     200 Mbit/s), hsm-populate builds the stubs on an ext4 image from the
#     server's manifest, and hsm-serve fills them with range requests in
#     fault mode, in fault mode with --prefetch of the profile the first run
#     recorded, and in mmap mode (a fresh copy each); one screen with the
#     bytes and requests nginx served, the events and the time of each
#     (fpc-bench demo).
#
# Usage: scripts/demo.sh [FPC-BENCH-DEMO-ARGS...]
#   e.g. --link 50ms (50 ms RTT / 50 Mbit/s), --local (filled from the
#   toolchain directory, no network), --exclude '' to populate the whole
#   toolchain, share/doc included (see selftests/target/release/fpc-bench
#   demo --help).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) sed -n '3,22s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
start=$(date +%s)
"$FPC_TOP/scripts/setup.sh"
"$FPC_TOP/scripts/fetch-base.sh"
"$FPC_TOP/scripts/apply.sh" "$FPC_SRC"
kdir=$("$FPC_TOP/scripts/build.sh" | tail -n1)
(cd "$FPC_TOP/selftests" && cargo build --release --locked -q)
toolchain=$(rustc --print sysroot) || die "rustc not found (the machine's rustup toolchain is required)"
bin="$FPC_TOP/selftests/target/release"
"$FPC_TOP/scripts/vm-run.sh" "$kdir" -- bash -c '"$1" && shift && "$@"' demo \
	"$bin/fpc-demo" "$bin/fpc-bench" demo --toolchain "$toolchain" "$@"
info "demo.sh wall time: $(( $(date +%s) - start )) s"
