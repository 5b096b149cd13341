#!/usr/bin/env bash
# Installs the real parts the product, its lab and its tests use: BIRD 2 and BIRD 1.6.8, etcd,
# promtool/Prometheus, prometheus-bird-exporter (benchmark reference), iproute2, nftables,
# graphviz (renders `mesh -o dot` in a test), and buildah with debootstrap for the agent's image
# (`make image`).
# Idempotent: does nothing when everything is already there.
# BIRD 1.6.8 (Debian package `bird`) conflicts with `bird2`, so its .deb is unpacked into
# vendor-bird/ (git-ignored) instead of being installed.
set -euo pipefail
cd "$(dirname "$0")/.."

packages=(bird2 etcd-server etcd-client prometheus prometheus-bird-exporter iproute2 nftables graphviz buildah debootstrap)
missing=()
for pkg in "${packages[@]}"; do
  dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" || missing+=("$pkg")
done

bird1_dir=vendor-bird
need_bird1=0
[ -x "$bird1_dir/usr/sbin/bird" ] && [ -x "$bird1_dir/usr/sbin/bird6" ] || need_bird1=1

if [ ${#missing[@]} -eq 0 ] && [ $need_bird1 -eq 0 ]; then
  exit 0
fi

export DEBIAN_FRONTEND=noninteractive
echo ">> apt-get update"
apt-get update -qq
if [ ${#missing[@]} -gt 0 ]; then
  echo ">> installing: ${missing[*]}"
  # Services from these packages must not start on the host: the project runs its own instances.
  policy=/usr/sbin/policy-rc.d
  created_policy=0
  if [ ! -e "$policy" ]; then
    printf '#!/bin/sh\nexit 101\n' > "$policy"; chmod +x "$policy"; created_policy=1
  fi
  apt-get install -y -qq --no-install-recommends "${missing[@]}" >/dev/null
  [ $created_policy -eq 1 ] && rm -f "$policy"
  # Stop anything the packages started anyway (no init system in containers makes this a no-op).
  for svc in bird etcd prometheus prometheus-bird-exporter prometheus-node-exporter; do
    pkill -x "$svc" 2>/dev/null || true
  done
fi

if [ $need_bird1 -eq 1 ]; then
  echo ">> unpacking BIRD 1.6.8 into $bird1_dir/"
  tmp=$(mktemp -d)
  (cd "$tmp" && apt-get download -qq bird)
  rm -rf "$bird1_dir"
  mkdir -p "$bird1_dir"
  dpkg-deb -x "$tmp"/bird_*.deb "$bird1_dir"
  rm -rf "$tmp"
fi
echo ">> system dependencies ready"
