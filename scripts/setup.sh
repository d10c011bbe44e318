#!/bin/sh
# One idempotent setup for a fresh Debian 12 machine (run as root): the system packages the
# lab and the tests use, a virtual environment in .venv, and herald installed into it.
# Re-running does only what is missing.
set -eu
cd "$(dirname "$0")/.."

APT_PACKAGES="python3-venv procps bird2 frr gobgpd exabgp nftables iproute2 conntrack curl \
iputils-ping tcpdump wrk iperf3 arping ndisc6 build-essential python3-dev chromium chromium-driver \
strace"
# kubectl for kube mode and its tests; keep one that another package already installed
# (both would own /usr/bin/kubectl, and dpkg refuses that).
command -v kubectl >/dev/null 2>&1 || APT_PACKAGES="$APT_PACKAGES kubernetes-client"

missing=""
for pkg in $APT_PACKAGES; do
    dpkg-query -W -f='${Status}' "$pkg" 2>/dev/null | grep -q "install ok installed" \
        || missing="$missing $pkg"
done
if [ -n "$missing" ]; then
    if [ "$(id -u)" -ne 0 ]; then
        echo "setup: missing Debian packages:$missing (run as root to install them)" >&2
        exit 1
    fi
    echo "setup: installing Debian packages:$missing"
    export DEBIAN_FRONTEND=noninteractive
    apt-get update -qq
    # shellcheck disable=SC2086
    apt-get install -y -qq --no-install-recommends $missing >/dev/null
fi

# The package's daemons must not run in the root namespace: herald starts its own per lab host.
for unit in frr bird gobgpd exabgp; do
    if command -v systemctl >/dev/null 2>&1 && systemctl is-active --quiet "$unit" 2>/dev/null; then
        systemctl disable --now "$unit" >/dev/null 2>&1 || true
    fi
done

if [ ! -x .venv/bin/python ]; then
    python3 -m venv .venv
fi
stamp=.venv/.herald-installed
# The C extension is built at install time: a change to its source reinstalls too.
want="$(cat pyproject.toml src/herald/dataplane/_maglev.c | sha256sum | cut -d' ' -f1)"
if [ ! -f "$stamp" ] || [ "$(cat "$stamp")" != "$want" ]; then
    .venv/bin/pip install -q --upgrade pip
    .venv/bin/pip install -q -e '.[dev]'
    echo "$want" > "$stamp"
fi
