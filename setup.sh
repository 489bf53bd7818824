#!/usr/bin/env bash
# Prepares a Debian/Ubuntu server to run pushservice daemons:
#   1. build packages (compiler, cmake, OpenSSL headers) from the distribution,
#   2. open-file limits and kernel settings for many concurrent outbound connections,
#   3. release build of the binaries, installed to $PREFIX/bin (default /usr/local).
# Run as root from a checkout: sudo ./setup.sh [--no-packages] [--no-kernel] [--no-build]
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PREFIX=${PREFIX:-/usr/local}
packages=1 kernel=1 build=1
for arg in "$@"; do
  case $arg in
    --no-packages) packages=0 ;;
    --no-kernel) kernel=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,7p' "$0"; exit 0 ;;
    *) echo "setup.sh: unknown option $arg (see --help)" >&2; exit 2 ;;
  esac
done
[ "$(id -u)" -eq 0 ] || { echo "setup.sh: run as root (sudo ./setup.sh)" >&2; exit 1; }

if [ $packages -eq 1 ]; then
  apt-get update -qq
  DEBIAN_FRONTEND=noninteractive apt-get install -y -qq \
    build-essential cmake pkg-config libssl-dev ca-certificates curl
fi

if [ $kernel -eq 1 ]; then
  # Each sender keeps thousands of HTTP/2 connections and sockets open.
  cat > /etc/security/limits.d/60-pushservice.conf <<'LIMITS'
*    soft nofile 1048576
*    hard nofile 1048576
root soft nofile 1048576
root hard nofile 1048576
LIMITS
  cat > /etc/sysctl.d/60-pushservice.conf <<'SYSCTL'
# More ephemeral ports and faster reuse for many outbound connections to push services.
net.ipv4.ip_local_port_range = 1024 65535
net.ipv4.tcp_tw_reuse = 1
net.ipv4.tcp_fin_timeout = 15
# Deeper accept and packet backlogs for bursts.
net.core.somaxconn = 8192
net.core.netdev_max_backlog = 16384
net.ipv4.tcp_max_syn_backlog = 8192
fs.file-max = 2097152
SYSCTL
  sysctl --system >/dev/null
fi

if [ $build -eq 1 ]; then
  command -v cargo >/dev/null || { echo "setup.sh: install Rust (rustup) first" >&2; exit 1; }
  cargo build --release --locked
  for bin in target/release/pushctl target/release/seed target/release/parser target/release/sender target/release/push-sink; do
    [ -x "$bin" ] && install -m 0755 "$bin" "$PREFIX/bin/"
  done
  echo "installed binaries to $PREFIX/bin"
  # systemd units: one parser, N senders (systemctl enable --now pushservice-sender@{1..4}).
  if [ -d /etc/systemd/system ]; then
    id pushservice >/dev/null 2>&1 || useradd --system --no-create-home pushservice
    install -d -m 0750 -o root -g pushservice /etc/pushservice
    [ -f /etc/pushservice/.env ] || install -m 0640 -g pushservice .env.example /etc/pushservice/.env
    install -m 0644 deploy/systemd/*.service /etc/systemd/system/
    systemctl daemon-reload 2>/dev/null || true
    echo "installed systemd units; edit /etc/pushservice/.env, then:"
    echo "  systemctl enable --now pushservice-parser pushservice-sender@1 pushservice-sender@2"
    echo "  systemctl enable --now pushservice-pushapi   # after setting API_ADMIN_TOKEN"
  fi
fi
