#!/usr/bin/env bash
# Install the local services the test suite starts for itself (Debian 12).
#
# Idempotent and fast when everything is present: each block checks for what it needs and
# prints one line saying what it did. Tests start their own throwaway servers (see
# tests/fixtures/postgres.py); this script only makes sure the binaries and OS users exist.
#
# Installing needs root (CI and the dev image run as root). When something is missing and we
# are not root, print what to run instead: fail under CI (CI=true), warn otherwise so the
# tests that need the service skip locally.
#
# To add a service, write an ensure_<name> function next to ensure_postgres and call it from
# main.
set -euo pipefail

PG_MAJOR=15
PG_BIN_DIR="/usr/lib/postgresql/${PG_MAJOR}/bin"

APT_UPDATED=0
POLICY_RC_D=/usr/sbin/policy-rc.d
POLICY_RC_D_CREATED=0

log() { printf 'ensure-services: %s\n' "$*"; }

is_root() { [ "$(id -u)" -eq 0 ]; }

is_ci() {
    case "${CI:-}" in
        "" | 0 | false | False | FALSE | no | No | NO) return 1 ;;
        *) return 0 ;;
    esac
}

# Called when something is missing and we cannot install it (not root).
cannot_install() {
    local what=$1
    if is_ci; then
        log "ERROR: ${what} is missing and installing it needs root; run: sudo $0" >&2
        exit 1
    fi
    log "WARNING: ${what} is missing and installing it needs root; run: sudo $0" \
        "(tests that need it will be skipped)" >&2
}

cleanup() {
    if [ "$POLICY_RC_D_CREATED" -eq 1 ]; then
        rm -f "$POLICY_RC_D"
    fi
}
trap cleanup EXIT

# Stop Debian maintainer scripts from starting services while we install packages.
block_service_starts() {
    if [ ! -e "$POLICY_RC_D" ]; then
        printf '#!/bin/sh\n# Added by ensure-services.sh during apt-get install.\nexit 101\n' \
            >"$POLICY_RC_D"
        chmod 0755 "$POLICY_RC_D"
        POLICY_RC_D_CREATED=1
    fi
}

allow_service_starts() {
    if [ "$POLICY_RC_D_CREATED" -eq 1 ]; then
        rm -f "$POLICY_RC_D"
        POLICY_RC_D_CREATED=0
    fi
}

apt_install() {
    if [ "$APT_UPDATED" -eq 0 ]; then
        apt-get update -qq
        APT_UPDATED=1
    fi
    block_service_starts
    DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "$@" >/dev/null
    allow_service_starts
}

ensure_postgres() {
    # As root the tests run the server as the postgres OS user; otherwise as the caller.
    if [ -x "${PG_BIN_DIR}/initdb" ] && { ! is_root || id -u postgres >/dev/null 2>&1; }; then
        log "PostgreSQL ${PG_MAJOR}: present (${PG_BIN_DIR}), nothing to do"
        return
    fi
    if ! is_root; then
        cannot_install "PostgreSQL ${PG_MAJOR} (${PG_BIN_DIR}/initdb)"
        return
    fi

    local did=()
    if [ ! -x "${PG_BIN_DIR}/initdb" ]; then
        # Debian's postinst creates a cluster "main" (and would start it): note whether one
        # exists already so we only drop the cluster that this install created.
        local had_main=0
        if [ -e "/etc/postgresql/${PG_MAJOR}/main/postgresql.conf" ]; then
            had_main=1
        fi
        apt_install "postgresql-${PG_MAJOR}" "postgresql-client-${PG_MAJOR}"
        did+=("installed postgresql-${PG_MAJOR} and postgresql-client-${PG_MAJOR}")
        if [ "$had_main" -eq 0 ] && [ -e "/etc/postgresql/${PG_MAJOR}/main/postgresql.conf" ]; then
            pg_dropcluster --stop "$PG_MAJOR" main
            did+=("dropped the system cluster ${PG_MAJOR}/main")
        fi
    fi
    if ! id -u postgres >/dev/null 2>&1; then
        # The package creates this user; recreate it if someone removed it.
        useradd --system --user-group --home-dir /var/lib/postgresql --shell /bin/bash postgres
        did+=("created the postgres user")
    fi
    local summary
    summary=$(printf '%s; ' "${did[@]}")
    log "PostgreSQL ${PG_MAJOR}: ${summary%; }"
}

ensure_java() {
    # Spark nodes (pyspark 4.0) need a Java 17 runtime.
    if command -v java >/dev/null 2>&1 && java -version 2>&1 | grep -q 'version "17'; then
        log "Java 17 (for Spark): present ($(command -v java)), nothing to do"
        return
    fi
    if ! is_root; then
        cannot_install "Java 17 for Spark (openjdk-17-jre-headless)"
        return
    fi
    apt_install openjdk-17-jre-headless
    log "Java 17 (for Spark): installed openjdk-17-jre-headless"
}

main() {
    ensure_postgres
    ensure_java
}

main "$@"
