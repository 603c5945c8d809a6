#!/usr/bin/env bash
# Sets up what imagesmith's tests and examples need on a Debian machine, idempotently:
# the Debian packages (docker.io, docker-registry, runc, busybox-static, cpio, socat,
# qemu-system-x86, linux-image-amd64, kmod for depmod, apache2-utils for htpasswd, stunnel4
# for the TLS engine tests, skopeo to push OCI layouts to the test registry, systemd-boot-efi
# for pkg/efi, ovmf to boot the disk formats and dosfstools, gdisk, xorriso, qemu-utils to
# check them), then a Docker engine when none answers
# (overlay2, falling back to vfs), waiting for its socket.
# Safe to run again: installed packages and a running engine are left as they are.
set -euo pipefail

log() { printf 'setup: %s\n' "$*" >&2; }

need_root() {
  if [ "$(id -u)" -ne 0 ]; then
    log "must run as root (installs packages and starts dockerd)"; exit 1
  fi
}

PACKAGES=(time docker.io docker-registry runc busybox-static cpio socat qemu-system-x86 linux-image-amd64 kmod python3 openssl apache2-utils stunnel4 skopeo systemd-boot-efi ovmf dosfstools gdisk xorriso qemu-utils)

# The Rust toolchain is not a Debian package here (Debian 12's rustc is 1.63; imagesmith
# needs the `rust-version` of Cargo.toml): it comes from rustup, which this script does not
# run. Say so before spending minutes on packages.
need_rust=$(sed -n 's/^rust-version = "\(.*\)"/\1/p' "$(dirname "$0")/../Cargo.toml")
if ! command -v cargo >/dev/null 2>&1; then
  log "cargo is not installed: install Rust >= $need_rust with rustup (see README.md, Toolchain), then run this again"
  exit 1
fi
have_rust=$(rustc --version | awk '{print $2}')
if [ "$(printf '%s\n%s\n' "$need_rust" "$have_rust" | sort -V | head -1)" != "$need_rust" ]; then
  log "rustc $have_rust is older than the $need_rust imagesmith needs: \`rustup update stable\`"
  exit 1
fi

missing=()
for p in "${PACKAGES[@]}"; do
  dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' || missing+=("$p")
done
if [ ${#missing[@]} -gt 0 ]; then
  need_root
  log "installing ${#missing[@]} Debian packages and what they need (${missing[*]}): about 2-3 minutes on a fresh machine"
  export DEBIAN_FRONTEND=noninteractive
  log "apt-get update"
  apt-get update -qq
  # One line per package set up, so a long install shows it is moving.
  { apt-get install -y --no-install-recommends "${missing[@]}" 2>&1 || true; } \
    | { grep --line-buffered -E '^(Setting up|E:)' || true; } | sed -u 's/^/setup: /' >&2
  for p in "${missing[@]}"; do
    dpkg-query -W -f='${Status}' "$p" 2>/dev/null | grep -q 'install ok installed' \
      || { log "package $p did not install"; exit 1; }
  done
fi

engine_up() { docker version --format '{{.Server.Version}}' >/dev/null 2>&1; }

if ! engine_up; then
  need_root
  if [ -n "${DOCKER_HOST:-}" ] && [ "${DOCKER_HOST}" != "unix:///var/run/docker.sock" ]; then
    log "DOCKER_HOST=$DOCKER_HOST does not answer; unset it to use a local engine"; exit 1
  fi
  for driver in overlay2 vfs; do
    log "starting dockerd (storage driver $driver)"
    nohup dockerd --storage-driver="$driver" --iptables=false --bridge=none \
      >"/var/log/imagesmith-dockerd.log" 2>&1 &
    pid=$!
    for _ in $(seq 1 60); do
      engine_up && break
      kill -0 "$pid" 2>/dev/null || break
      sleep 1
    done
    if engine_up; then break; fi
    log "dockerd with $driver did not come up:"; tail -5 /var/log/imagesmith-dockerd.log >&2 || true
    kill "$pid" 2>/dev/null || true; sleep 2
  done
  engine_up || { log "no Docker engine could be started"; exit 1; }
fi
log "engine $(docker version --format '{{.Server.Version}} (API {{.Server.APIVersion}})')"
