#!/usr/bin/env bash
# Install the system packages prescale's tests need; safe to run again (idempotent).
#
#   sudo scripts/install_system_deps.sh      # or as root, e.g. from `make test`
#
# Today that is the Prometheus server and promtool (Debian/Ubuntu package `prometheus`),
# used by tests/integration/test_prometheus_real.py, test_metrics_prometheus.py and
# tests/unit/test_alerts.py (promtool check/test rules); libfaketime (package `libfaketime`),
# with which tests/faults steps a process's wall clock for real; and the Docker Engine
# (`docker.io`, with `runc`) plus a static busybox (`busybox-static`), with which
# tests/integration/test_docker_real.py runs a private dockerd and a busybox image
# built by `docker import`. Nothing is installed when all are present. The packaged
# services are never left running: while apt-get runs, a temporary /usr/sbin/policy-rc.d
# forbids invoke-rc.d from starting services (any existing policy-rc.d is put back
# afterwards), and if systemd is the init system the units are stopped and disabled
# after the install. The tests start their own servers.
set -euo pipefail

log() { printf 'install_system_deps: %s\n' "$*" >&2; }

FAKETIME_LIB=/usr/lib/x86_64-linux-gnu/faketime/libfaketime.so.1
missing=()
{ command -v prometheus >/dev/null 2>&1 && command -v promtool >/dev/null 2>&1; } \
    || missing+=(prometheus)
[ -e "$FAKETIME_LIB" ] || missing+=(libfaketime)
command -v dockerd >/dev/null 2>&1 || missing+=(docker.io)
command -v runc >/dev/null 2>&1 || missing+=(runc)
[ -x /bin/busybox ] || missing+=(busybox-static)
# ip(8) and tc(8): the network tier's tests (network namespaces, veth pairs, a TBF)
{ command -v ip >/dev/null 2>&1 && command -v tc >/dev/null 2>&1; } || missing+=(iproute2)
if [ ${#missing[@]} -eq 0 ]; then
    log "prometheus ($(command -v prometheus)), promtool, libfaketime, dockerd, runc, busybox and" \
        "iproute2 already installed"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    log "missing: ${missing[*]}; installing needs root; re-run as root (sudo $0)"
    exit 1
fi
if ! command -v apt-get >/dev/null 2>&1; then
    log "missing: ${missing[*]} and apt-get is not available; install them yourself" \
        "(Prometheus >= 2.x with 'prometheus' and 'promtool' on PATH; libfaketime; dockerd and runc;" \
        "a static /bin/busybox)"
    exit 1
fi

export DEBIAN_FRONTEND=noninteractive
POLICY=/usr/sbin/policy-rc.d
BACKUP=""

restore_policy() {
    rm -f "$POLICY"
    if [ -n "$BACKUP" ] && [ -e "$BACKUP" ]; then
        mv -f "$BACKUP" "$POLICY"
    fi
}

if [ -e "$POLICY" ]; then
    BACKUP="$(mktemp /usr/sbin/policy-rc.d.prescale-backup.XXXXXX)"
    cp -p "$POLICY" "$BACKUP"
fi
trap restore_policy EXIT
# exit status 101 = "action forbidden": invoke-rc.d will not start any service.
printf '#!/bin/sh\nexit 101\n' >"$POLICY"
chmod 755 "$POLICY"

log "apt-get update"
apt-get update -q
log "apt-get install ${missing[*]}"
apt-get install -y -q --no-install-recommends "${missing[@]}"

# Under systemd, deb-systemd-invoke honours policy-rc.d too; stop and disable the unit
# anyway in case it was started, so that nothing stays running.
if [ -d /run/systemd/system ] && command -v systemctl >/dev/null 2>&1; then
    systemctl disable --now prometheus.service >/dev/null 2>&1 || true
    systemctl disable --now docker.service docker.socket containerd.service \
        >/dev/null 2>&1 || true
fi

command -v prometheus >/dev/null 2>&1 || { log "prometheus is still not on PATH"; exit 1; }
command -v promtool >/dev/null 2>&1 || { log "promtool is still not on PATH"; exit 1; }
[ -e "$FAKETIME_LIB" ] || { log "libfaketime is still missing ($FAKETIME_LIB)"; exit 1; }
command -v dockerd >/dev/null 2>&1 || { log "dockerd is still not on PATH"; exit 1; }
command -v runc >/dev/null 2>&1 || { log "runc is still not on PATH"; exit 1; }
[ -x /bin/busybox ] || { log "/bin/busybox is still missing"; exit 1; }
log "installed: ${missing[*]}"
