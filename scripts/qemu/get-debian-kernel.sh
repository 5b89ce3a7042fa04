#!/bin/bash
# Download and unpack the newest Debian kernel package matching a regex.
# usage: get-debian-kernel.sh PKG_REGEX DEST_DIR
# DEST_DIR gets: bzImage, config, System.map, modroot/lib/modules/VERSION
# (with modules.dep from depmod -b), package.txt (name, version, sha256).
set -euo pipefail
RE=$1; DEST=$(realpath -m "$2")
mkdir -p "$DEST"
if [ -e "$DEST/package.txt" ] && [ -e "$DEST/bzImage" ]; then
    echo "get-debian-kernel: using $(head -1 "$DEST/package.txt")"; exit 0
fi
command -v depmod >/dev/null || apt-get install -y -q kmod >/dev/null
PKG=$(apt-cache search --names-only "$RE" | cut -d' ' -f1 | grep -E "$RE" | sort -V | tail -1)
[ -n "$PKG" ] || { echo "get-debian-kernel: no package matches $RE (apt-get update?)" >&2; exit 1; }
cd "$DEST"
rm -f ./*.deb
apt-get download "$PKG" 2>&1 | grep -v unsandboxed || true
DEB=$(ls ./*.deb)
rm -rf root && mkdir root && dpkg-deb -x "$DEB" root
VER=$(ls root/lib/modules)
cp root/boot/vmlinuz-"$VER" bzImage
cp root/boot/config-"$VER" config
cp root/boot/System.map-"$VER" System.map
rm -rf modroot && mkdir -p modroot/lib && mv root/lib/modules modroot/lib/ && rm -rf root
depmod -b modroot "$VER"
{ echo "$PKG $(dpkg-deb -f "$DEB" Version)"; echo "file: $(basename "$DEB")";
  echo "sha256: $(sha256sum "$DEB" | cut -d' ' -f1)"; echo "source: $(dpkg-deb -f "$DEB" Source)";
  echo "kernel release: $VER"; } > package.txt
echo "get-debian-kernel: $(head -1 package.txt) in $DEST"
