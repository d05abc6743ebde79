#!/usr/bin/env bash
# Install boosterd as a systemd service on a Raspberry Pi (Raspberry Pi OS Bookworm).
#
#   sudo systemd/install.sh            install or upgrade, enable, start if the config checks
#   sudo systemd/uninstall.sh [--purge]
#
# Creates: user 'boosterd' (groups dialout, gpio), /opt/boosterd/venv (the program),
# /etc/boosterd/station.yaml (from the example, if absent), /etc/boosterd/credentials/mqtt
# (MQTT "username:password", empty = anonymous), /etc/boosterd/hmi.crt and hmi.key (the
# web HMI's self-signed certificate, if absent), and the unit. State (the telemetry
# buffer) lives in /var/lib/boosterd, created by systemd (StateDirectory=).
set -euo pipefail
src="$(cd "$(dirname "$0")/.." && pwd)"
prefix=/opt/boosterd
etc=/etc/boosterd

[ "$(id -u)" -eq 0 ] || { echo "install.sh: run as root (sudo)" >&2; exit 1; }

if ! python3 -c 'import venv, ensurepip' 2>/dev/null; then
    apt-get update -qq
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq python3-venv
fi

getent group gpio >/dev/null || groupadd --system gpio
getent group dialout >/dev/null || groupadd --system dialout
if ! id boosterd >/dev/null 2>&1; then
    useradd --system --no-create-home --home-dir /var/lib/boosterd \
        --shell /usr/sbin/nologin --groups dialout,gpio boosterd
else
    usermod -a -G dialout,gpio boosterd
fi

install -d -m 0755 "$prefix"
[ -x "$prefix/venv/bin/python" ] || python3 -m venv "$prefix/venv"
"$prefix/venv/bin/python" -m pip install -q --upgrade pip
extra=""
grep -q "Raspberry Pi" /proc/device-tree/model 2>/dev/null && extra="[rpi]"
"$prefix/venv/bin/python" -m pip install -q "$src$extra"
install -m 0644 "$src/README.md" "$prefix/README.md"

install -d -m 0750 -o root -g boosterd "$etc"
if [ ! -f "$etc/station.yaml" ]; then
    install -m 0640 -o root -g boosterd "$src/config/station.example.yaml" "$etc/station.yaml"
    echo "install.sh: wrote $etc/station.yaml from the example: edit it for this station" >&2
fi
install -d -m 0700 -o root -g root "$etc/credentials"
# LoadCredential= fails the unit when the file is missing; empty means anonymous MQTT.
[ -f "$etc/credentials/mqtt" ] || install -m 0600 -o root -g root /dev/null "$etc/credentials/mqtt"

# A self-signed certificate for the web HMI's optional TLS, naming this Pi (used once the
# station file's hmi: section points at it; docs/hmi.md). Made once; kept on upgrades.
command -v openssl >/dev/null || DEBIAN_FRONTEND=noninteractive apt-get install -y -qq openssl
if [ ! -f "$etc/hmi.crt" ]; then
    "$prefix/venv/bin/boosterd" hmi-cert --cert "$etc/hmi.crt" --key "$etc/hmi.key" >&2 \
        || echo "install.sh: no HMI certificate made; later: sudo boosterd hmi-cert" >&2
fi

install -m 0644 "$src/systemd/boosterd.service" /etc/systemd/system/boosterd.service
systemctl daemon-reload
systemctl enable boosterd.service

if "$prefix/venv/bin/boosterd" check "$etc/station.yaml"; then
    systemctl restart boosterd.service
    echo "install.sh: boosterd is running: journalctl -u boosterd -f; boosterd status" >&2
else
    echo "install.sh: fix $etc/station.yaml, then: systemctl start boosterd" >&2
fi
