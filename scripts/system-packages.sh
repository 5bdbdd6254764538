#!/usr/bin/env bash
# Install the Debian packages the tests need, only those that are missing. Safe to run again.
#   prometheus-alertmanager   a real Alertmanager (and amtool) for the alert-delivery tests
# As root it installs them; otherwise it prints the command to run and exits 1.
set -euo pipefail

packages=(prometheus-alertmanager)

missing=()
for package in "${packages[@]}"; do
  if ! dpkg-query -W -f='${Status}' "$package" 2>/dev/null | grep -q "install ok installed"; then
    missing+=("$package")
  fi
done
[ "${#missing[@]}" -eq 0 ] && exit 0

if [ "$(id -u)" != 0 ] || ! command -v apt-get >/dev/null 2>&1; then
  echo "system-packages: missing ${missing[*]}; run: sudo apt-get update && sudo apt-get install -y ${missing[*]}" >&2
  exit 1
fi

echo "system-packages: installing ${missing[*]}" >&2
export DEBIAN_FRONTEND=noninteractive
# The package's init script would start an Alertmanager on 0.0.0.0:9093; the tests start their
# own on loopback. Unless the machine already has a policy (Docker images do), forbid service
# starts for the duration of the install only.
policy=/usr/sbin/policy-rc.d
output=$(mktemp)
cleanup="rm -f '$output'"
if [ ! -e "$policy" ]; then
  printf '#!/bin/sh\nexit 101\n' >"$policy" && chmod 0755 "$policy"
  cleanup="$cleanup '$policy'"
fi
trap "$cleanup" EXIT
if ! { apt-get update -qq && apt-get install -y -qq --no-install-recommends "${missing[@]}"; } \
  >"$output" 2>&1; then
  cat "$output" >&2
  echo "system-packages: apt-get failed to install ${missing[*]}" >&2
  exit 1
fi
echo "system-packages: installed ${missing[*]}" >&2
