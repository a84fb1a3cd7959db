#!/usr/bin/env bash
# Build the local test images without any registry (see ENVIRONMENT.md):
#   permfix-test/bookworm:latest  debootstrap minbase + python3, sudo, procps
#   permfix-test/podman:latest    the above + podman, uidmap, crun, fuse-overlayfs, slirp4netns
#   permfix-test/busybox:latest   Debian's static busybox, with /etc/passwd and /etc/group
# Expensive parts are cached in $PERMFIX_CACHE (rootfs tarballs) and in Docker's own image
# store; each image carries a label with the hash of what it was built from, so a change
# rebuilds it and nothing else does.
set -euo pipefail
here=$(cd "$(dirname "$0")" && pwd)
cache=${PERMFIX_CACHE:-/var/cache/permfix-tests}
mkdir -p "$cache"

log() { printf '[images] %s\n' "$*"; }

# Two test runs on one machine (two checkouts) share the cache: one builds, the other waits.
exec 9>"$cache/images.lock"
flock 9

image_label() { docker image inspect -f '{{ index .Config.Labels "permfix.source" }}' "$1" 2>/dev/null || true; }

bookworm_tar="$cache/bookworm-rootfs.tar"
if [ ! -s "$bookworm_tar" ]; then
  log "debootstrap bookworm (once; about a minute)"
  rootfs="$cache/bookworm-rootfs.tmp"
  rm -rf "$rootfs"
  debootstrap --variant=minbase --include=python3,sudo,procps bookworm "$rootfs" >"$cache/debootstrap.log" 2>&1 \
    || { tail -20 "$cache/debootstrap.log"; exit 1; }
  chmod 755 "$rootfs"
  tar -C "$rootfs" -cf "$bookworm_tar.tmp" .
  mv "$bookworm_tar.tmp" "$bookworm_tar"
  rm -rf "$rootfs"
fi
bookworm_src="bookworm-$(stat -c %s "$bookworm_tar")"
if [ "$(image_label permfix-test/bookworm:latest)" != "$bookworm_src" ]; then
  log "docker import permfix-test/bookworm:latest"
  docker import -c 'CMD ["sleep","infinity"]' -c "LABEL permfix.source=$bookworm_src" \
    "$bookworm_tar" permfix-test/bookworm:latest >/dev/null
fi

podman_src="podman-$(cat "$here/podman-image/Dockerfile" | sha256sum | cut -c1-16)-$bookworm_src"
if [ "$(image_label permfix-test/podman:latest)" != "$podman_src" ]; then
  log "docker build permfix-test/podman:latest (apt-get inside; a minute or two)"
  docker build -q --label "permfix.source=$podman_src" -t permfix-test/podman:latest "$here/podman-image" >/dev/null
fi

busybox_tar="$cache/busybox-rootfs.tar"
busybox_src="busybox-$(sha256sum /bin/busybox | cut -c1-16)-v1"
if [ ! -s "$busybox_tar" ] || [ "$(cat "$busybox_tar.source" 2>/dev/null)" != "$busybox_src" ]; then
  log "busybox rootfs tarball"
  root=$(mktemp -d)
  mkdir -p "$root/bin" "$root/etc" "$root/tmp" "$root/data"
  cp /bin/busybox "$root/bin/busybox"
  for applet in $("$root/bin/busybox" --list); do
    [ -e "$root/bin/$applet" ] || ln -s busybox "$root/bin/$applet"
  done
  printf 'root:x:0:0:root:/root:/bin/sh\napp:x:1000:1000:app:/tmp:/bin/sh\npostgres:x:999:999:postgres:/tmp:/bin/sh\nnobody:x:65534:65534:nobody:/nonexistent:/bin/sh\n' >"$root/etc/passwd"
  printf 'root:x:0:\napp:x:1000:\npostgres:x:999:\nstaff:x:50:app\nnogroup:x:65534:\n' >"$root/etc/group"
  chmod 755 "$root"
  chmod 1777 "$root/tmp"
  tar -C "$root" -cf "$busybox_tar.tmp" .
  rm -rf "$root"
  mv "$busybox_tar.tmp" "$busybox_tar"
  chmod 644 "$busybox_tar"
  echo "$busybox_src" >"$busybox_tar.source"
fi
if [ "$(image_label permfix-test/busybox:latest)" != "$busybox_src" ]; then
  log "docker import permfix-test/busybox:latest"
  docker import -c 'CMD ["sh"]' -c "LABEL permfix.source=$busybox_src" "$busybox_tar" permfix-test/busybox:latest >/dev/null
fi
log "ready: permfix-test/bookworm, permfix-test/podman, permfix-test/busybox"
