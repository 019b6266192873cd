#!/usr/bin/env bash
# Installs what crashcart needs on a Debian machine with Node.js 20 and builds it.
# Run as root from anywhere: scripts/setup.sh
#   apt: runc, crun, docker.io, containerd (ctr), podman and netavark (the demo and the tests),
#        lxc and systemd-container (systemd-nspawn) for the LXC and nspawn tests, e2fsprogs
#        (mke2fs for images), busybox-static and bash-static (the static toolkit), patchelf
#        (relocates the full and minimal toolkits' executables into /dev/crashcart), a C/C++
#        toolchain for the addon, musl-tools (musl-gcc: the toolkit matrix's musl container),
#        socat (the benchmark's relay that crashcart forward is measured against)
#   npm: the project's dependencies (npm ci), the native addon (node-gyp), the TypeScript
#   and a crashcart command in /usr/local/bin
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run me as root (sudo $0)" >&2
  exit 1
fi

export DEBIAN_FRONTEND=noninteractive
apt-get update -qq
apt-get install -y -qq --no-install-recommends \
  runc crun e2fsprogs busybox-static bash-static patchelf util-linux tmux docker.io containerd podman netavark lxc systemd-container \
  g++ gcc libc6-dev make python3 ca-certificates musl-tools socat >/dev/null

# node-gyp downloads Node's headers unless it is told where they are; Debian's and
# distribution builds of Node ship them next to the binary.
nodedir=$(node -p "require('path').resolve(process.execPath, '..', '..')")
if [ -f "$nodedir/include/node/node_api.h" ]; then
  export npm_config_nodedir="$nodedir"
fi

npm ci --no-audit --no-fund --loglevel=error
npm run --silent build

ln -sf "$PWD/bin/crashcart" /usr/local/bin/crashcart
echo "setup: crashcart is ready: $(command -v crashcart)"
