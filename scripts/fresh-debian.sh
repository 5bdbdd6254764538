#!/usr/bin/env bash
# The README's first command on a fresh Debian 12 with Python 3.11, in a chroot.
#   scripts/fresh-debian.sh [ROOTFS] [DEMO OPTIONS...]
# debootstraps a minimal bookworm into ROOTFS (default /var/tmp/commpulse-debian12, kept for
# the next run), installs python3 (3.11) and nothing else, clones this checkout's HEAD into
# it, and runs `scripts/setup.sh && .venv/bin/commpulse demo` there. Root only (chroot,
# mounts); it needs Debian's mirror and PyPI, and takes about 5 minutes.
# Not in CI: the suite's time goes elsewhere. tests/unit/test_dependencies.py catches the
# commonest failure (an import that only the test extra provides) in every run.
set -euo pipefail
cd "$(dirname "$0")/.."
root="${1:-/var/tmp/commpulse-debian12}"
shift || true
[ "$(id -u)" = 0 ] || { echo "fresh-debian: run as root (debootstrap, chroot)" >&2; exit 1; }

if [ ! -x "$root/usr/bin/python3" ]; then
  command -v debootstrap >/dev/null || { apt-get update -qq && apt-get install -y -qq debootstrap >/dev/null; }
  echo "fresh-debian: debootstrap bookworm into $root" >&2
  debootstrap --variant=minbase bookworm "$root" http://deb.debian.org/debian >/dev/null
fi
cp /etc/resolv.conf "$root/etc/resolv.conf"

mounted=()
cleanup() {
  for ((i = ${#mounted[@]} - 1; i >= 0; i--)); do umount -l "${mounted[i]}" 2>/dev/null || true; done
}
trap cleanup EXIT
for fs in proc sys dev; do
  mountpoint -q "$root/$fs" || { mount --rbind "/$fs" "$root/$fs"; mounted+=("$root/$fs"); }
done

chroot "$root" bash -c "apt-get update -qq && apt-get install -y -qq python3 >/dev/null"
# The machine's certificate authorities, after apt (whose ca-certificates would replace them):
# a TLS-inspecting proxy may sit between this machine and PyPI.
mkdir -p "$root/etc/ssl/certs" && cp /etc/ssl/certs/ca-certificates.crt "$root/etc/ssl/certs/"
rm -rf "$root/root/commpulse"
git clone -q "$PWD" "$root/root/commpulse"
echo "fresh-debian: $(chroot "$root" python3 --version), commpulse $(git rev-parse --short HEAD)" >&2
# A login shell with the machine's environment minus what points at files outside the chroot.
chroot "$root" env -u PIP_FIND_LINKS bash -c \
  "cd /root/commpulse && scripts/setup.sh && .venv/bin/commpulse demo $*"
