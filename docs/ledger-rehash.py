#!/usr/bin/env python3
"""Re-hash a day of the iParking ledger, independently of iParking.

Usage: python3 ledger-rehash.py EXPORT [DIGESTS_JSON]
EXPORT is `iparking ledger export --day YYYY-MM-DD`; DIGESTS_JSON a copy of
/public/ledger/digests.json. Each transaction's hash is SHA-256(previous hash | its line).
Prints the number of transactions and the day's last hash; exits 1 at the first broken link.
"""
import hashlib, json, sys

def fail(msg):
    print("BROKEN: " + msg)
    sys.exit(1)

prev, last_seq, count, day = None, None, 0, None
for no, raw in enumerate(open(sys.argv[1], encoding="utf-8"), 1):
    raw = raw.rstrip("\n")
    if raw.startswith("# iParking ledger, Hanoi day "):
        day = raw.split()[5].rstrip(":")
    if raw.startswith("#") or not raw.strip():
        continue
    if raw.startswith("prev "):
        prev = raw[5:].strip()
        continue
    line, _, stored = raw.rpartition("|")
    seq = int(line.split("|")[0])
    if last_seq is not None and seq != last_seq + 1:
        fail(f"line {no}: place {seq} follows place {last_seq}: places are missing")
    if prev is None or hashlib.sha256(f"{prev}|{line}".encode()).hexdigest() != stored:
        fail(f"line {no}: transaction {line.split('|')[1]} (place {seq}) does not give its hash")
    prev, last_seq, count = stored, seq, count + 1

print(f"{count} transactions re-hashed; the day's last hash: {prev}")
if len(sys.argv) > 2:
    digests = json.load(open(sys.argv[2], encoding="utf-8"))["digests"]
    published = [d["last_hash"] for d in digests if d["day"] == day]
    if published != [prev]:
        fail(f"the published digest of {day} is {published or 'missing'}, not {prev}")
    print(f"it is the digest published for {day}")
