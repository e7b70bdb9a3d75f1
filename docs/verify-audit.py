#!/usr/bin/env python3
"""Verify a commitd audit log export and its signed checkpoints without commitd.

    python3 docs/verify-audit.py EXPORT.jsonl [--checkpoints FILE --public-key HEX ...]

EXPORT.jsonl is `commitd audit export --format jsonl` of the whole log (no --since, --until or
--kind: the chain is checked from event 1). FILE is the checkpoint file the daemon writes
(`[audit] checkpoint_file`), HEX the public key printed by `commitd audit keygen` (repeat
--public-key for rotated keys). The rules re-implemented here are specified in docs/audit.md
("Canonical form and hash chain" and "Checkpoints"); this script depends on nothing of
commitd's.

Checks, each failure printed on one line:
  * every event's hash is the SHA-256 of its canonical form, ids run 1, 2, 3, ... and each
    prev_hash is the previous event's hash (the first one 64 zeros);
  * the readable fields agree with the hashed ones (`payload` with `payload_json`, `rationale`
    with `rationale_json`, `amount` with `amount_micros`);
  * every checkpoint is signed by a trusted key (ed25519) and names an event that is in the
    export with the signed hash: a chain rewritten and re-hashed, or cut short, fails here.

Exit status: 0 when everything passed, 1 on any failure, 2 on a usage error. The standard
library does everything except ed25519, which needs the `cryptography` package
(`pip install cryptography`); without --checkpoints it is not needed.
"""

import argparse
import decimal
import hashlib
import json
import re
import sys

GENESIS = "0" * 64
TIME_RE = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{6}Z$")
HEX64_RE = re.compile(r"^[0-9a-f]{64}$")
HEX128_RE = re.compile(r"^[0-9a-f]{128}$")
CHECKPOINT_TYPE = "commitd.audit.checkpoint"
CHECKPOINT_KEYS = {"event_id", "hash", "public_key", "signature", "time", "type", "v"}
EVENT_KEYS = (
    "id", "time", "kind", "actor", "subject", "amount_micros", "currency",
    "payload_json", "rationale_json", "prev_hash", "hash",
)
_ESCAPES = {'"': '\\"', "\\": "\\\\", "\b": "\\b", "\t": "\\t", "\n": "\\n", "\f": "\\f", "\r": "\\r"}


def json_string(s):
    """A JSON string as the canonical form writes it: `"` and `\\` escaped, \\b \\t \\n \\f \\r,
    other code points below U+0020 as \\u00xx (lower-case hex), everything else raw."""
    out = ['"']
    for ch in s:
        if ch in _ESCAPES:
            out.append(_ESCAPES[ch])
        elif ord(ch) < 0x20:
            out.append("\\u%04x" % ord(ch))
        else:
            out.append(ch)
    out.append('"')
    return "".join(out)


def is_int(v):
    return isinstance(v, int) and not isinstance(v, bool)


def canonical_event(e):
    """The canonical form (version 1) of an exported event: the text that is hashed."""
    amount = "null" if e["amount_micros"] is None else str(e["amount_micros"])
    currency = "null" if e["currency"] is None else json_string(e["currency"])
    return (
        '{"actor":' + json_string(e["actor"])
        + ',"amount_micros":' + amount
        + ',"currency":' + currency
        + ',"id":' + str(e["id"])
        + ',"kind":' + json_string(e["kind"])
        + ',"payload":' + e["payload_json"]
        + ',"prev_hash":' + json_string(e["prev_hash"])
        + ',"rationale":' + e["rationale_json"]
        + ',"subject":' + json_string(e["subject"])
        + ',"time":' + json_string(e["time"])
        + ',"v":1}'
    )


def canonical_checkpoint(c):
    """The bytes a checkpoint's signature covers (version 1)."""
    return (
        '{"event_id":%d,"hash":"%s","public_key":"%s","time":"%s","type":"%s","v":1}'
        % (c["event_id"], c["hash"], c["public_key"], c["time"], CHECKPOINT_TYPE)
    ).encode("utf-8")


def check_event_fields(n, e):
    """Types of the hashed fields; returns a problem or None."""
    missing = [k for k in EVENT_KEYS if k not in e]
    if missing:
        return "line %d: missing field(s) %s (an export by a commitd without payload_json? re-export)" % (
            n, ", ".join(missing))
    if not is_int(e["id"]) or e["id"] < 1:
        return "line %d: id is not an integer >= 1" % n
    for k in ("kind", "actor", "subject", "payload_json", "rationale_json", "prev_hash", "hash", "time"):
        if not isinstance(e[k], str):
            return "line %d (event %s): %s is not a string" % (n, e["id"], k)
    if not TIME_RE.match(e["time"]):
        return "line %d (event %d): time %r is not YYYY-MM-DDTHH:MM:SS.ffffffZ" % (n, e["id"], e["time"])
    if (e["amount_micros"] is None) != (e["currency"] is None):
        return "line %d (event %d): amount_micros and currency must both be null or both set" % (n, e["id"])
    if e["amount_micros"] is not None and (not is_int(e["amount_micros"]) or not isinstance(e["currency"], str)):
        return "line %d (event %d): amount_micros is not an integer or currency not a string" % (n, e["id"])
    for k in ("payload_json", "rationale_json"):
        try:
            if not isinstance(json.loads(e[k]), dict):
                return "line %d (event %d): %s is not a JSON object" % (n, e["id"], k)
        except ValueError as err:
            return "line %d (event %d): %s is not JSON: %s" % (n, e["id"], k, err)
    return None


def readable_mismatch(e):
    """The fields people read must say what the hashed ones say."""
    hashed = json.loads(e["payload_json"])
    shown = e.get("payload")
    if not isinstance(shown, dict):
        return "payload is not an object"
    for k, v in hashed.items():
        if shown.get(k) != v:
            return "payload.%s is %s but the hashed payload_json says %s" % (
                k, json.dumps(shown.get(k)), json.dumps(v))
    for k, v in shown.items():
        # Fields added to a kind since the event was written read back as null.
        if k not in hashed and v is not None:
            return "payload.%s is not in the hashed payload_json" % k
    if e.get("rationale") != json.loads(e["rationale_json"]):
        return "rationale differs from the hashed rationale_json"
    if e["amount_micros"] is not None:
        try:
            amount = decimal.Decimal(e.get("amount"))
        except (decimal.InvalidOperation, TypeError):
            return "amount %r is not a decimal" % (e.get("amount"),)
        if amount * 1000000 != e["amount_micros"]:
            return "amount %s differs from amount_micros %d" % (e.get("amount"), e["amount_micros"])
    return None


def verify_chain(path):
    """Returns (problems, {id: hash}, last_id)."""
    problems = []
    hashes = {}
    expected_id, expected_prev = 1, GENESIS
    with open(path, "r", encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            try:
                e = json.loads(raw)
            except ValueError as err:
                problems.append("%s line %d: not JSON: %s" % (path, n, err))
                break
            if not isinstance(e, dict):
                problems.append("%s line %d: not a JSON object" % (path, n))
                break
            bad = check_event_fields(n, e)
            if bad:
                problems.append("%s %s" % (path, bad))
                break
            eid = e["id"]
            if eid != expected_id:
                if expected_id == 1:
                    problems.append("%s: the export starts at event %d, not 1: export the whole log "
                                    "(no --since, --until or --kind)" % (path, eid))
                else:
                    problems.append("event %d: expected event %d here: events %d..%d are missing"
                                    % (eid, expected_id, expected_id, eid - 1))
                break
            if e["prev_hash"] != expected_prev:
                problems.append("event %d: prev_hash %s does not match the hash of event %d (%s): "
                                "the chain was altered before this event" % (eid, e["prev_hash"], eid - 1, expected_prev))
                break
            try:
                computed = hashlib.sha256(canonical_event(e).encode("utf-8")).hexdigest()
            except UnicodeEncodeError as err:
                problems.append("event %d: not valid UTF-8 text: %s" % (eid, err))
                break
            if computed != e["hash"]:
                problems.append("event %d: hash does not match its contents (stored %s, computed %s): "
                                "the event was modified" % (eid, e["hash"], computed))
                break
            mismatch = readable_mismatch(e)
            if mismatch:
                # The chain is intact; the readable copy is not: report and go on.
                problems.append("event %d: %s: the export was edited" % (eid, mismatch))
            hashes[eid] = e["hash"]
            expected_id, expected_prev = eid + 1, e["hash"]
    return problems, hashes, expected_id - 1


def verify_checkpoints(path, keys, hashes, last_id, chain_broken):
    """Returns (problems, passed, total)."""
    try:
        from cryptography.exceptions import InvalidSignature
        from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey
    except ImportError:
        print("error: checking checkpoints needs the `cryptography` package (pip install cryptography)")
        sys.exit(2)
    trusted = {}
    for k in keys:
        k = k.strip().lower()
        if not HEX64_RE.match(k):
            print("error: --public-key %r: expected 64 hex digits" % k)
            sys.exit(2)
        trusted[k] = Ed25519PublicKey.from_public_bytes(bytes.fromhex(k))
    problems, passed, total = [], 0, 0
    with open(path, "r", encoding="utf-8") as f:
        for n, raw in enumerate(f, start=1):
            if not raw.strip():
                continue
            total += 1
            where = "checkpoint %s line %d" % (path, n)
            try:
                c = json.loads(raw)
            except ValueError as err:
                problems.append("%s: FAILED: not JSON: %s" % (where, err))
                continue
            if not isinstance(c, dict) or set(c) != CHECKPOINT_KEYS:
                problems.append("%s: FAILED: expected exactly the fields %s" % (where, ", ".join(sorted(CHECKPOINT_KEYS))))
                continue
            if c["type"] != CHECKPOINT_TYPE or c["v"] != 1 or isinstance(c["v"], bool):
                problems.append("%s: FAILED: not a version 1 commitd checkpoint" % where)
                continue
            if (not is_int(c["event_id"]) or c["event_id"] < 1 or not isinstance(c["hash"], str)
                    or not HEX64_RE.match(c["hash"]) or not isinstance(c["public_key"], str)
                    or not HEX64_RE.match(c["public_key"]) or not isinstance(c["signature"], str)
                    or not HEX128_RE.match(c["signature"]) or not isinstance(c["time"], str)
                    or not TIME_RE.match(c["time"])):
                problems.append("%s: FAILED: a field has the wrong form" % where)
                continue
            key = trusted.get(c["public_key"])
            if key is None:
                problems.append("%s: FAILED: signed by key %s, which is not a trusted public key" % (where, c["public_key"]))
                continue
            try:
                key.verify(bytes.fromhex(c["signature"]), canonical_checkpoint(c))
            except InvalidSignature:
                problems.append("%s: FAILED: bad signature (event %d, time %s): the line was altered or forged"
                                % (where, c["event_id"], c["time"]))
                continue
            eid = c["event_id"]
            stored = hashes.get(eid)
            if stored == c["hash"]:
                passed += 1
            elif stored is not None:
                problems.append("%s (event %d at %s): FAILED: event %d has hash %s, the checkpoint signed %s: "
                                "the chain was rewritten at or before event %d" % (where, eid, c["time"], eid, stored, c["hash"], eid))
            elif chain_broken:
                problems.append("%s (event %d at %s): FAILED: not verifiable, the chain is broken before it" % (where, eid, c["time"]))
            else:
                problems.append("%s (event %d at %s): FAILED: event %d is missing, the log ends at event %d: "
                                "events were removed from its end" % (where, eid, c["time"], eid, last_id))
    return problems, passed, total


def main():
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("export", help="commitd audit export --format jsonl (the whole log)")
    parser.add_argument("--checkpoints", help="the checkpoint file (JSON lines)")
    parser.add_argument("--public-key", action="append", default=[], help="trusted ed25519 public key, 64 hex digits")
    args = parser.parse_args()
    if args.checkpoints and not args.public_key:
        parser.error("--checkpoints needs --public-key")
    try:
        problems, hashes, last_id = verify_chain(args.export)
        chain_broken = bool(problems)
        if not problems:
            print("audit chain OK: %d events verified; head is event %d with hash %s"
                  % (len(hashes), last_id, hashes.get(last_id, GENESIS)))
        for p in problems:
            print(p)
        if args.checkpoints:
            cp_problems, passed, total = verify_checkpoints(
                args.checkpoints, args.public_key, hashes, last_id, chain_broken)
            for p in cp_problems:
                print(p)
            print("checkpoints: %d of %d passed" % (passed, total))
            problems += cp_problems
    except OSError as err:
        print("error: %s" % err)
        return 2
    return 1 if problems else 0


if __name__ == "__main__":
    sys.exit(main())
