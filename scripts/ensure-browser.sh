#!/usr/bin/env bash
# Make sure the headless browser for the report tests is installed (Debian 12).
#
# Installs Debian's chromium, and fonts-liberation (Liberation Sans has Arial's metrics, so
# charts laid out by vl-convert look the same in the browser), with apt-get when missing.
# Idempotent and instant when present; prints one line. Never downloads a browser any other
# way (no `playwright install`). Installing needs root: without it, a missing package is an
# error under CI (CI=true) and a warning otherwise (the browser tests then skip).
set -euo pipefail

CHROMIUM=/usr/bin/chromium
FONT=/usr/share/fonts/truetype/liberation/LiberationSans-Regular.ttf

log() { printf 'ensure-browser: %s\n' "$*"; }

is_ci() {
    case "${CI:-}" in
        "" | 0 | false | False | FALSE | no | No | NO) return 1 ;;
        *) return 0 ;;
    esac
}

missing=()
[ -x "$CHROMIUM" ] || missing+=(chromium)
[ -f "$FONT" ] || missing+=(fonts-liberation)

if [ "${#missing[@]}" -eq 0 ]; then
    log "chromium: present (${CHROMIUM}, Liberation Sans), nothing to do"
    exit 0
fi

if [ "$(id -u)" -ne 0 ]; then
    if is_ci; then
        log "ERROR: missing ${missing[*]}; installing needs root; run: sudo $0" >&2
        exit 1
    fi
    log "WARNING: missing ${missing[*]}; run: sudo $0 (browser tests will be skipped)" >&2
    exit 0
fi

apt-get update -qq
DEBIAN_FRONTEND=noninteractive apt-get install -y -qq --no-install-recommends "${missing[@]}" \
    >/dev/null
if [ ! -x "$CHROMIUM" ]; then
    log "ERROR: installed ${missing[*]} but ${CHROMIUM} is still missing" >&2
    exit 1
fi
log "chromium: installed ${missing[*]} ($("$CHROMIUM" --version 2>/dev/null | head -n 1))"
