#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The main job: set up, apply the series to the base, build, boot the patched
# kernel once and
#  1. show pre-content events on a lazily filled 1 MiB file, mmap-time vs
#     fault-time (fpc-demo);
#  2. run `rustc --version` from a lazy copy (hsm-populate) of this machine's
#     rustup toolchain on an ext4 image in the guest, served by
#     `hsm-serve --mode fault` and then, from a fresh copy, `--mode mmap`,
#     and print the bytes fetched and the time of each (fpc-bench demo).
#
# Usage: scripts/demo.sh [FPC-BENCH-DEMO-ARGS...]
#   e.g. --exclude '' to populate the whole toolchain, share/doc included
#   (see selftests/target/release/fpc-bench demo --help).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
case "${1:-}" in -h|--help) sed -n '3,15s/^# \{0,1\}//p' "$0"; exit 0 ;; esac
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
