#!/usr/bin/env bash
# Installs what crashcart itself needs on a Debian machine with Node.js 20 and builds it.
# Run as root from anywhere: scripts/setup.sh
#   apt: runc (the demo's container), e2fsprogs (mke2fs, debugfs and e2fsck for images),
#        patchelf (relocates the full and minimal toolkits' executables into /dev/crashcart),
#        a C/C++ toolchain and python3 for the addon (node-gyp) and the demo's static sleeper.
#        Nothing else: no container runtime beyond runc, no daemon is started. The toolkit's
#        own packages are downloaded by `crashcart image build`, never installed.
#   npm: the project's dependencies (npm ci), the native addon (node-gyp), the TypeScript
#   and a crashcart command in /usr/local/bin
# The test suite's runtimes and tools come with `npm test` (scripts/setup-test.sh).
set -euo pipefail
cd "$(dirname "$0")/.."

if [ "$(id -u)" != 0 ]; then
  echo "setup: run me as root (sudo $0)" >&2
  exit 1
fi

packages=(runc e2fsprogs patchelf g++ gcc libc6-dev make python3 ca-certificates)
# apt-get update only when something is missing: a second run costs nothing
if [ -n "$(scripts/missing-packages.sh "${packages[@]}")" ]; then
  export DEBIAN_FRONTEND=noninteractive
  apt-get update -qq
  apt-get install -y -qq --no-install-recommends "${packages[@]}" >/dev/null
fi

# node-gyp downloads Node's headers unless it is told where they are; Debian's and
# distribution builds of Node ship them next to the binary.
nodedir=$(node -p "require('path').resolve(process.execPath, '..', '..')")
if [ -f "$nodedir/include/node/node_api.h" ]; then
  export npm_config_nodedir="$nodedir"
fi

npm ci --no-audit --no-fund --loglevel=error
npm run --silent build

# bin/crashcart, started by the Node.js the addon was built for (no /usr/bin/env on every run)
node dist/scripts/launcher.js "$PWD/bin/crashcart" /usr/local/bin/crashcart
echo "setup: crashcart is ready: $(command -v crashcart)"
