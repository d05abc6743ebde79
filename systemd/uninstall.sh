#!/usr/bin/env bash
# Remove the boosterd service and program. Keeps /etc/boosterd (the station file) and
# /var/lib/boosterd (undelivered telemetry) unless --purge is given.
set -euo pipefail
[ "$(id -u)" -eq 0 ] || { echo "uninstall.sh: run as root (sudo)" >&2; exit 1; }
purge=no
[ "${1:-}" = "--purge" ] && purge=yes

# Stopping puts every relay in its safe state (the service handles SIGTERM).
systemctl disable --now boosterd.service 2>/dev/null || true
rm -f /etc/systemd/system/boosterd.service
systemctl daemon-reload
rm -rf /opt/boosterd
if [ "$purge" = yes ]; then
    rm -rf /etc/boosterd /var/lib/boosterd
    id boosterd >/dev/null 2>&1 && userdel boosterd
fi
if [ "$purge" = yes ]; then
    echo "uninstall.sh: removed boosterd, its configuration and its data" >&2
else
    echo "uninstall.sh: removed boosterd; kept /etc/boosterd and /var/lib/boosterd" >&2
fi
