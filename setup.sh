#!/usr/bin/env bash
# Prepares a Debian/Ubuntu server to run the pushservice daemons under systemd:
#   1. packages   build tools (compiler, cmake, OpenSSL headers) and CA certificates
#   2. kernel     open-file limits and network settings for many outbound connections
#   3. account    the `pushservice` system user the units run as
#   4. build      release build of the binaries (skipped with --bin-dir)
#   5. binaries   parser, sender, pushapi, gateway, pushctl, seed, push-sink into $PREFIX/bin
#   6. config     /etc/pushservice/.env from .env.example, only when there is none
#   7. units      deploy/systemd/*.service into /etc/systemd/system, then daemon-reload
# Every step compares before it writes, so a second run changes nothing and says so.
#
# Usage, as root from a checkout: sudo ./setup.sh [options]
#   --dry-run       print every step and what it would change; change nothing
#   --bin-dir DIR   install the binaries in DIR (e.g. a CI artifact) instead of building
#   --root DIR      install under DIR instead of / (an image, a test): no packages, no
#                   account, kernel settings written but not applied, no systemctl
#   --no-packages --no-kernel --no-build   leave that part out (--no-build: no build, no
#                   binaries, config or units)
# Environment: PREFIX (default /usr/local). deploy/README.md is the operations guide.
set -euo pipefail
cd "$(dirname "${BASH_SOURCE[0]}")"

PREFIX=${PREFIX:-/usr/local}
BINARIES=(parser sender pushapi gateway pushctl seed push-sink)
PACKAGES=(build-essential cmake pkg-config libssl-dev ca-certificates curl)
packages=1 kernel=1 build=1 dry_run=0 root=/ bin_dir=
while [ $# -gt 0 ]; do
  case $1 in
    --dry-run) dry_run=1 ;;
    --bin-dir) [ $# -ge 2 ] || { echo "setup.sh: --bin-dir needs a directory" >&2; exit 2; }
      bin_dir=$2; shift ;;
    --root) [ $# -ge 2 ] || { echo "setup.sh: --root needs a directory" >&2; exit 2; }
      root=$2; shift ;;
    --no-packages) packages=0 ;;
    --no-kernel) kernel=0 ;;
    --no-build) build=0 ;;
    -h|--help) sed -n '2,21p' "$0" | sed 's/^# \{0,1\}//'; exit 0 ;;
    *) echo "setup.sh: unknown option $1 (see --help)" >&2; exit 2 ;;
  esac
  shift
done
if [ "$root" != / ]; then
  [ -d "$root" ] || { echo "setup.sh: --root $root is not a directory" >&2; exit 2; }
  root=$(cd "$root" && pwd)
fi
if [ -n "$bin_dir" ]; then
  [ -d "$bin_dir" ] || { echo "setup.sh: --bin-dir $bin_dir is not a directory" >&2; exit 2; }
  bin_dir=$(cd "$bin_dir" && pwd)
fi
if [ "$root" = / ] && [ $dry_run -eq 0 ] && [ "$(id -u)" -ne 0 ]; then
  echo "setup.sh: run as root (sudo ./setup.sh), or see what it would do with --dry-run" >&2
  exit 1
fi

# $root + an absolute path.
at() { if [ "$root" = / ]; then echo "$1"; else echo "$root$1"; fi; }
changes=0
step() { printf '\nsetup: [%s] %s\n' "$1" "$2"; }
ok() { echo "  unchanged: $*"; }
# Runs a command that changes the system, or says it would.
change() {
  local what=$1; shift
  changes=$((changes + 1))
  if [ $dry_run -eq 1 ]; then
    echo "  would $what: $*"
  else
    echo "  $what: $*"
    "$@"
  fi
}
# Installs file $1 as $2 with mode $3 unless it is there already, the same and with that mode.
put() {
  local src=$1 dest=$2 mode=$3
  if [ -f "$dest" ] && cmp -s "$src" "$dest" && [ "$(stat -c %a "$dest")" = "${mode#0}" ]; then
    ok "$dest"
  else
    change install install -D -m "$mode" "$src" "$dest"
  fi
}
# Writes the text on stdin to $1 (mode 0644) unless the file already holds exactly that.
put_text() {
  local dest=$1 tmp
  tmp=$(mktemp)
  cat >"$tmp"
  if [ -f "$dest" ] && cmp -s "$tmp" "$dest" && [ "$(stat -c %a "$dest")" = 644 ]; then
    ok "$dest"
  elif [ $dry_run -eq 1 ]; then
    changes=$((changes + 1))
    echo "  would write: $dest:"
    sed 's/^/    | /' "$tmp"
  else
    changes=$((changes + 1))
    echo "  write: $dest"
    install -D -m 0644 "$tmp" "$dest"
  fi
  rm -f "$tmp"
}
# The group files are installed with: pushservice once the account exists.
config_group() {
  if getent group pushservice >/dev/null; then echo pushservice; fi
}

if [ $packages -eq 1 ]; then
  step packages "build tools and CA certificates from the distribution"
  if [ "$root" != / ]; then
    echo "  skipped: packages are installed on / only (--root $root)"
  else
    missing=()
    for pkg in "${PACKAGES[@]}"; do
      dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q 'install ok installed' || missing+=("$pkg")
    done
    if [ ${#missing[@]} -eq 0 ]; then
      ok "${PACKAGES[*]} installed"
    else
      change run apt-get update -qq
      change install env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}"
    fi
  fi
fi

if [ $kernel -eq 1 ]; then
  step kernel "open-file limits and network settings for many outbound connections"
  # Each sender keeps thousands of HTTP/2 connections and sockets open (the units set their
  # own LimitNOFILE; this covers daemons started by hand or by pm2).
  put_text "$(at /etc/security/limits.d/60-pushservice.conf)" <<'LIMITS'
*    soft nofile 1048576
*    hard nofile 1048576
root soft nofile 1048576
root hard nofile 1048576
LIMITS
  sysctl_file=$(at /etc/sysctl.d/60-pushservice.conf)
  before=$changes
  put_text "$sysctl_file" <<'SYSCTL'
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
  if [ $changes -gt "$before" ] && [ "$root" = / ]; then
    # A container may not let us set them now; they apply at the next boot either way.
    if [ $dry_run -eq 1 ]; then
      echo "  would apply: sysctl -q -p $sysctl_file"
    elif ! sysctl -q -p "$sysctl_file"; then
      echo "  warning: sysctl could not apply $sysctl_file now (a container?); it applies at boot" >&2
    fi
  fi
fi

if [ $build -eq 1 ]; then
  step account "system user pushservice (the units' User=)"
  if [ "$root" != / ]; then
    echo "  skipped: accounts are created on / only (--root $root)"
  elif id pushservice >/dev/null 2>&1; then
    ok "user pushservice exists"
  else
    change create useradd --system --user-group --no-create-home --home-dir /nonexistent \
      --shell /usr/sbin/nologin pushservice
  fi

  step build "release build of ${BINARIES[*]}"
  if [ -n "$bin_dir" ]; then
    echo "  skipped: installing the binaries of --bin-dir $bin_dir"
    src_dir=$bin_dir
  else
    command -v cargo >/dev/null || { echo "setup.sh: install Rust (rustup) first, or pass --bin-dir" >&2; exit 1; }
    src_dir=$PWD/target/release
    bin_args=()
    for bin in "${BINARIES[@]}"; do bin_args+=(--bin "$bin"); done
    # cargo builds only what changed: run again, it does nothing.
    if [ $dry_run -eq 1 ]; then
      echo "  would run: cargo build --release --locked ${bin_args[*]}"
    else
      echo "  run: cargo build --release --locked ${bin_args[*]}"
      cargo build --release --locked "${bin_args[@]}"
    fi
  fi

  step binaries "into $(at "$PREFIX/bin")"
  for bin in "${BINARIES[@]}"; do
    if [ -x "$src_dir/$bin" ]; then
      put "$src_dir/$bin" "$(at "$PREFIX/bin/$bin")" 0755
    elif [ $dry_run -eq 1 ]; then
      echo "  would install: $src_dir/$bin (once built) as $(at "$PREFIX/bin/$bin")"
    else
      echo "setup.sh: $src_dir/$bin is missing" >&2
      exit 1
    fi
  done

  step config "$(at /etc/pushservice) (settings, never overwritten)"
  config_dir=$(at /etc/pushservice)
  group=$(config_group)
  if [ -d "$config_dir" ]; then
    ok "$config_dir"
  else
    change create install -d -m 0750 ${group:+-g "$group"} "$config_dir"
  fi
  if [ -f "$config_dir/.env" ]; then
    ok "$config_dir/.env (yours; compare with .env.example for new settings)"
  else
    change install install -m 0640 ${group:+-g "$group"} .env.example "$config_dir/.env"
  fi
  if [ -z "$group" ] && [ "$root" != / ]; then
    echo "  note: no pushservice group on this host, so these belong to $(id -gn)'s group"
  fi

  step units "systemd units into $(at /etc/systemd/system)"
  before=$changes
  for unit in deploy/systemd/*.service; do
    put "$unit" "$(at "/etc/systemd/system/${unit##*/}")" 0644
  done
  if [ $changes -gt "$before" ] && [ "$root" = / ] && [ -d /run/systemd/system ]; then
    change reload systemctl daemon-reload
  fi
fi

echo
if [ $dry_run -eq 1 ]; then
  echo "setup: dry run, nothing changed; $changes change(s) to make"
elif [ $changes -eq 0 ]; then
  echo "setup: nothing to change, everything was in place"
else
  echo "setup: $changes change(s) made"
fi
if [ $build -eq 1 ] && [ "$root" = / ]; then
  cat <<'NEXT'
Next: edit /etc/pushservice/.env (MONGODB_URL, KAFKA_BROKERS, API_ADMIN_TOKEN ...), then
  PUSHSERVICE_ENV_FILE=/etc/pushservice/.env pushctl setup    # topics and indexes, once
  systemctl enable --now pushservice-parser pushservice-sender@1 pushservice-sender@2
  systemctl enable --now pushservice-pushapi
  systemctl enable --now pushservice-gateway      # realtime channels (optional)
deploy/README.md has the rest (health checks, scaling, stopping).
NEXT
fi
