#!/bin/sh
# Prints those of the Debian packages named that are not installed, one a line; nothing when
# all are. One dpkg-query call: fast enough to run before every test run.
[ $# -gt 0 ] || exit 0
installed=$(dpkg-query -W -f='${Package} ${db:Status-Status}\n' "$@" 2>/dev/null | awk '$2 == "installed" { print $1 }')
for p in "$@"; do
  printf '%s\n' "$installed" | grep -qx -- "$p" || echo "$p"
done
