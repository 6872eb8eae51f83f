#!/usr/bin/env bash
# Makes N driver tokens against a demo server whose standard output (where the SANDBOX SMS
# gateway prints login codes) goes to LOG. Prints one token per line.
#   ./target/release/iparking --data-dir /tmp/lt serve --listen 127.0.0.1:18181 > /tmp/lt-server.log &
#   loadtest/make-driver-tokens.sh http://127.0.0.1:18181 /tmp/lt-server.log 16 > /tmp/drivers.txt
# Sandbox only: a production server never prints codes.
set -euo pipefail
BASE=${1:?base url} LOG=${2:?server stdout log} N=${3:-16}
for i in $(seq 1 "$N"); do
  phone=$(printf '0913%06d' "$i")
  curl -fsS -X POST "$BASE/v1/auth/otp" -H 'content-type: application/json' -d "{\"phone\":\"$phone\"}" >/dev/null
  code=""
  for _ in $(seq 1 50); do
    code=$(grep -a "SANDBOX SMS → +84•••••${phone: -4}\]" "$LOG" | tail -1 | grep -oE '[0-9]{6}' | tail -1 || true)
    [ -n "$code" ] && break
    sleep 0.1
  done
  [ -n "$code" ] || { echo "no code for $phone in $LOG" >&2; exit 1; }
  curl -fsS -X POST "$BASE/v1/auth/token" -H 'content-type: application/json' \
    -d "{\"phone\":\"$phone\",\"code\":\"$code\"}" | sed -E 's/.*"token":"([^"]+)".*/\1/'; echo
done
