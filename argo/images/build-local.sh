#!/usr/bin/env bash
# Builds the root filesystem of the API/provisioner image for the local stack, without a registry or a
# Docker engine: a minimal Debian bookworm (Python 3.11) by debootstrap, plus a virtual environment with
# the project's dependencies. Our own packages are added as a separate layer at import time
# (devstack/stack/app_image.py), so code changes do not rebuild this.
#
#   argo/images/build-local.sh            -> prints the rootfs directory
# Cached by the hash of pyproject.toml under $WML_CACHE (default ~/.cache/workflow-middlelayer).
set -euo pipefail
here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
root="$(cd "$here/../.." && pwd)"
cache="${WML_CACHE:-$HOME/.cache/workflow-middlelayer}"
venv="${WML_VENV:-$root/.venv}"
# Pin every dependency to the project's lock file (requirements.lock, what `make` installs and the tests run):
# no resolver backtracking in the image, and the image runs exactly the versions the tests ran.
constraints="$(cat "$root/requirements.lock")"
requirements="$(python3 -c 'import sys, tomllib; print("\n".join(tomllib.load(open(sys.argv[1], "rb"))["project"]["dependencies"]))' "$root/pyproject.toml")"
# Keyed by the runtime requirements (not dev tools) and the layout below (bump ROOTFS_LAYOUT on changes).
ROOTFS_LAYOUT=1
key="$( (echo "$requirements"; echo "$constraints"; echo "$ROOTFS_LAYOUT") | sha256sum | cut -c1-12)"
out="$cache/images/app-rootfs-$key"
mkdir -p "$cache/images"
# One build at a time (the test suite and `make run` may both ask for the image).
exec 9>"$cache/images/.app-rootfs.lock"; flock 9
if [ -f "$out/.complete" ]; then echo "$out"; exit 0; fi

command -v debootstrap >/dev/null || { apt-get update -qq >&2; apt-get install -y -qq debootstrap >&2; }
echo "[app-image] building the Python image root filesystem — first run only (~5 min)" >&2
# The Debian base does not depend on our dependencies: reuse any finished debootstrap.
base="$cache/images/debian-bookworm-python3"
if [ ! -f "$base/.complete" ]; then
  rm -rf "$base"; mkdir -p "$base"
  debootstrap --variant=minbase --include=python3,python3-venv,ca-certificates bookworm "$base" \
    http://deb.debian.org/debian >&2
  touch "$base/.complete"
fi
rm -rf "$out.tmp"; cp -a "$base" "$out.tmp"; rm -f "$out.tmp/.complete"
# Dependencies only (not our code): resolve them from pyproject.toml and install into /opt/wml.
echo "$requirements" >"$out.tmp/requirements.txt"
echo "$constraints" >"$out.tmp/constraints.txt"
cp /etc/resolv.conf "$out.tmp/etc/resolv.conf"
# The host's CA bundle, for the install only: package registries may sit behind a TLS-inspecting proxy.
cp /etc/ssl/certs/ca-certificates.crt "$out.tmp/tmp/host-ca.crt"
chroot "$out.tmp" /usr/bin/python3 -m venv /opt/wml
chroot "$out.tmp" /usr/bin/env -i PATH=/usr/bin:/bin HOME=/root PIP_CERT=/tmp/host-ca.crt \
  SSL_CERT_FILE=/tmp/host-ca.crt /opt/wml/bin/pip install -q --no-cache-dir -r /requirements.txt -c /constraints.txt >&2
rm -f "$out.tmp/tmp/host-ca.crt"
rm -rf "$out.tmp/var/cache/apt/archives"/*.deb "$out.tmp/var/lib/apt/lists"/*  "$out.tmp/requirements.txt" "$out.tmp/constraints.txt"
: >"$out.tmp/etc/resolv.conf"
echo "wml:x:10001:10001::/nonexistent:/usr/sbin/nologin" >>"$out.tmp/etc/passwd"
echo "wml:x:10001:" >>"$out.tmp/etc/group"
rm -rf "$out"; mv "$out.tmp" "$out"; touch "$out/.complete"
# Older root filesystems are not needed any more.
find "$cache/images" -maxdepth 1 -name 'app-rootfs-*' ! -name "app-rootfs-$key" -exec rm -rf {} +
echo "$out"
