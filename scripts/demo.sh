#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# The main job: set up, apply the series to the base, build, boot the patched
# kernel and show pre-content events on a lazily filled file (fpc-demo).
set -euo pipefail
source "$(dirname "$0")/lib.sh"
"$FPC_TOP/scripts/setup.sh"
"$FPC_TOP/scripts/fetch-base.sh"
"$FPC_TOP/scripts/apply.sh" "$FPC_SRC"
kdir=$("$FPC_TOP/scripts/build.sh" | tail -n1)
(cd "$FPC_TOP/selftests" && cargo build --release --locked -q)
"$FPC_TOP/scripts/vm-run.sh" "$kdir" -- "$FPC_TOP/selftests/target/release/fpc-demo"
