#!/usr/bin/env bash
# SPDX-License-Identifier: GPL-2.0
# Idempotent installation of everything the project needs, from nothing:
# Debian packages from the machine's own suite only, rust-src matching
# `rustc --version`, bindgen (cargo install) and virtme-ng (PyPI, in a venv).
# Packages of the newer suite are only ever *downloaded* through a private apt
# configuration, never installed, so nothing on the host is upgraded.
set -euo pipefail
source "$(dirname "$0")/lib.sh"

[ "$(id -u)" = 0 ] || die "setup.sh must run as root (apt-get, udev, loop devices)"
mkdir -p "$FPC_CACHE" "$FPC_TOOLS"

HOST_PKGS=(
	"clang$FPC_LLVM" "lld$FPC_LLVM" "llvm$FPC_LLVM" "libclang$FPC_LLVM-dev"
	flex bison bc libelf-dev libssl-dev cpio kmod busybox-static
	e2fsprogs xfsprogs btrfs-progs util-linux
	qemu-system-x86 udev python3-venv rsync xz-utils git patch ndctl bindfs
	gcc  # cc: scripts/icount.sh (TCG plugin, static guest program; libc6-dev comes with clang)
	nginx iproute2  # guest: the hsm_* tests' HTTP server (started by the tests) and tc (netem)
)

# nginx is for the tests, which start their own instance inside the guest:
# it must not run as a service on the host.  While apt installs it, a
# policy-rc.d (unless the machine has one) stops the package from starting
# it; after that the service is disabled and, if it runs anyway, stopped.
# Only when this script installs nginx: a host nginx set up by hand is left
# alone.
no_service_start() {
	[ -e /usr/sbin/policy-rc.d ] && return 0
	printf '#!/bin/sh\n# scripts/setup.sh: no service starts while it installs packages\nexit 101\n' \
		>/usr/sbin/policy-rc.d
	chmod 755 /usr/sbin/policy-rc.d
	trap 'rm -f /usr/sbin/policy-rc.d' EXIT
}
disable_nginx_service() {
	if command -v deb-systemd-helper >/dev/null; then
		deb-systemd-helper disable nginx.service >/dev/null 2>&1 || true
	fi
	update-rc.d nginx disable >/dev/null 2>&1 || true
	if [ -d /run/systemd/system ]; then
		systemctl stop nginx.service >/dev/null 2>&1 || true
	elif [ -s /run/nginx.pid ]; then
		start-stop-daemon --stop --quiet --retry QUIT/5/TERM/5 --pidfile /run/nginx.pid \
			--exec /usr/sbin/nginx || true
	fi
	if command -v pgrep >/dev/null && pgrep -x nginx >/dev/null; then
		warn "an nginx is running on this host (not started by setup.sh?): the tests do not need it"
	fi
}

# 1. Host packages (the machine's own suites; apt's default priorities).
missing=()
for p in "${HOST_PKGS[@]}"; do
	dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
	info "installing host packages: ${missing[*]}"
	export DEBIAN_FRONTEND=noninteractive
	installs_nginx=0
	[[ " ${missing[*]} " == *" nginx "* ]] && installs_nginx=1
	[ $installs_nginx = 0 ] || no_service_start
	apt-get update -qq || die "apt-get update failed"
	apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null ||
		die "apt-get install failed for: ${missing[*]}"
	[ $installs_nginx = 0 ] || disable_nginx_service
fi
command -v "clang$FPC_LLVM" >/dev/null || die "clang$FPC_LLVM is not installed"

# 2. Private apt configuration for the backports suite (download only).
mkdir -p "$FPC_APT/lists/partial" "$FPC_APT/cache/archives/partial" \
	"$FPC_APT/sources.list.d" "$FPC_APT/preferences.d"
touch "$FPC_APT/preferences"
uri=$(fpc_archive_uri)
want="deb [signed-by=/usr/share/keyrings/debian-archive-keyring.gpg] $uri $FPC_BACKPORTS_SUITE main"
if [ "$(cat "$FPC_APT/sources.list" 2>/dev/null)" != "$want" ] ||
   [ -z "$(find "$FPC_APT/lists" -name '*Packages*' -mmin -1440 2>/dev/null | head -n1)" ]; then
	echo "$want" >"$FPC_APT/sources.list"
	info "updating private package lists for $FPC_BACKPORTS_SUITE"
	fpc_apt_private update -qq || die "apt-get update of $FPC_BACKPORTS_SUITE failed"
fi

# 3. rust-src matching the machine's rustc, exactly.
command -v rustc >/dev/null || die "rustc not found (the machine's rustup toolchain is required)"
rustver=$(rustc --version | awk '{print $2}')
if [ ! -f "$FPC_TOOLS/rust-src.path" ] || ! grep -q "/rust-src-$rustver/" "$FPC_TOOLS/rust-src.path"; then
	debver=$(fpc_apt_versions rust-src | awk -v v="$rustver" '$0 ~ "^"v"[+~-]" {print; exit}')
	[ -n "$debver" ] || die "no Debian rust-src package for rustc $rustver in $FPC_BACKPORTS_SUITE; install rust-src $rustver by hand and write its library path to $FPC_TOOLS/rust-src.path"
	info "fetching rust-src $debver"
	d="$FPC_TOOLS/rust-src-$rustver"
	rm -rf "$d" && mkdir -p "$d"
	(cd "$d" && fpc_apt_private download -qq "rust-src=$debver" && dpkg-deb -x rust-src_*.deb . && rm -f rust-src_*.deb) ||
		die "download of rust-src=$debver failed"
	lib="$d/usr/lib/rustlib/src/rust/library"
	[ -d "$lib/core" ] || die "rust-src package has no library/core at $lib"
	echo "$lib" >"$FPC_TOOLS/rust-src.path"
fi

# 4. bindgen.
if ! "$FPC_TOOLS/cargo/bin/bindgen" --version 2>/dev/null | grep -q " $FPC_BINDGEN_VERSION"; then
	info "cargo install bindgen-cli $FPC_BINDGEN_VERSION"
	cargo install -q --locked --root "$FPC_TOOLS/cargo" bindgen-cli --version "$FPC_BINDGEN_VERSION" ||
		die "cargo install bindgen-cli failed"
fi

# 5. virtme-ng in a venv.
if ! "$FPC_TOOLS/venv/bin/vng" --version 2>/dev/null | grep -q "$FPC_VNG_VERSION"; then
	info "pip install virtme-ng==$FPC_VNG_VERSION"
	python3 -m venv "$FPC_TOOLS/venv" || die "python3 -m venv failed"
	"$FPC_TOOLS/venv/bin/pip" install -q "virtme-ng==$FPC_VNG_VERSION" || die "pip install virtme-ng failed"
fi

info "setup complete (cache: $FPC_CACHE)"
