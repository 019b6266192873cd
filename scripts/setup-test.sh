#!/usr/bin/env bash
# Installs what the test suite needs beyond scripts/setup.sh, and nothing when it is all
# there (one dpkg-query; apt-get only for what is missing). `npm test` runs it first.
#   docker.io, containerd (ctr), podman, netavark, crun, lxc, systemd-container
#     (systemd-nspawn): the runtimes the end-to-end tests start containers of, each under a
#     private daemon or state directory
#   busybox-static (targets with a shell), tmux (a real terminal), musl-tools (the toolkit
#   matrix's musl container), python3 and socat (test helpers), zsh (its completion
#   script), man-db (man -w finds the .deb's page)
# Debian's docker.io, containerd and lxc start their services from their maintainer scripts
# (invoke-rc.d / deb-systemd-invoke). A test machine must not get a dockerd with a bridge and
# iptables rules out of this, so a policy-rc.d that denies every start is in place while
# apt-get runs (and removed again); on a machine booted with systemd the units are also
# disabled, so a reboot does not start them either. The tests start their own daemons.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(docker.io containerd podman netavark crun lxc systemd-container busybox-static tmux musl-tools python3 socat zsh man-db)
missing=$(scripts/missing-packages.sh "${packages[@]}")
[ -z "$missing" ] && exit 0

if [ "$(id -u)" != 0 ]; then
  echo "setup-test: not installed: $(echo $missing); run as root to install them (tests that need them skip)" >&2
  exit 0
fi

policy=/usr/sbin/policy-rc.d
if [ -e "$policy" ]; then
  echo "setup-test: $policy is there already and decides whether services start" >&2
else
  trap 'rm -f "$policy"' EXIT
  printf '#!/bin/sh\n# scripts/setup-test.sh: no service starts while the test packages install\nexit 101\n' >"$policy"
  chmod 755 "$policy"
fi

echo "setup-test: installing $(echo $missing)" >&2
export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
# shellcheck disable=SC2086
apt-get install -y -qq --no-install-recommends $missing >/dev/null

if [ -d /run/systemd/system ]; then
  systemctl disable --now docker.service docker.socket containerd.service lxc.service lxc-net.service >/dev/null 2>&1 || true
fi
