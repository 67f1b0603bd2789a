#!/usr/bin/env python3
"""A second, independent checker of ticket-audit's verifiable log, from the contract alone.

It shares no code with the service: Ed25519 from the `cryptography` package, SHA-256 from
hashlib, the signed-note and checkpoint formats (C2SP signed-note, tlog-checkpoint), and
RFC 9162's iterative proof verification algorithms (sections 2.1.3.2 and 2.1.4.2), where the
service uses Go sumdb/tlog's recursive ones.

    check_checkpoint.py checkpoint  KEY NOTE_FILE
    check_checkpoint.py evidence    KEY EVIDENCE_FILE
    check_checkpoint.py consistency KEY OLD_NOTE_FILE NEW_NOTE_FILE PROOF_FILE

KEY is the verifier key line (`name+hexid+base64`) or a file holding it. Prints one JSON object
on success; on failure prints `FAIL <check>: <why>` to stderr and exits 1.
"""

import base64
import binascii
import datetime
import hashlib
import json
import os
import struct
import sys

from cryptography.exceptions import InvalidSignature
from cryptography.hazmat.primitives.asymmetric.ed25519 import Ed25519PublicKey


class Fail(Exception):
    def __init__(self, check, why):
        super().__init__(f"{check}: {why}")
        self.check = check


def b64(s, what):
    try:
        return base64.b64decode(s, validate=True)
    except (binascii.Error, ValueError, TypeError) as e:
        raise Fail(what, f"not base64 ({e})")


def hash32(s, what):
    h = b64(s, what)
    if len(h) != 32:
        raise Fail(what, "not a 32-byte hash")
    return h


def parse_key(line):
    if os.path.exists(line):
        with open(line) as f:
            line = f.read()
    line = line.strip()
    parts = line.split("+", 2)
    if len(parts) != 3:
        raise Fail("key", "expected NAME+KEYID+KEY")
    name, hexid, key64 = parts
    raw = b64(key64, "key")
    if len(hexid) != 8 or len(raw) != 33 or raw[0] != 1:
        raise Fail("key", "not an Ed25519 verifier key")
    key_id = hashlib.sha256(name.encode() + b"\n" + raw).digest()[:4]
    if key_id.hex() != hexid.lower():
        raise Fail("key", "the key id does not match the name and key")
    return name, key_id, Ed25519PublicKey.from_public_bytes(raw[1:])


def open_note(note, key):
    """Returns the signed text, having checked one signature by `key`."""
    name, key_id, public = key
    split = note.rfind("\n\n")
    if split < 0 or not note.endswith("\n"):
        raise Fail("checkpoint", "not a signed note")
    text, sigs = note[: split + 1], note[split + 2 :]
    seen = []
    for line in sigs[:-1].split("\n"):
        if not line.startswith("\u2014 "):
            raise Fail("checkpoint", "a signature line must start with an em dash")
        sig_name, _, sig64 = line[2:].partition(" ")
        blob = b64(sig64, "checkpoint")
        seen.append(f"{sig_name}+{blob[:4].hex()}")
        if sig_name != name or blob[:4] != key_id:
            continue
        try:
            public.verify(blob[4:], text.encode())
        except InvalidSignature:
            raise Fail("signature", f"the signature by {name} does not verify")
        return text
    raise Fail("key_id", f"not signed by {name}+{key_id.hex()} (signed by {', '.join(seen)})")


def open_checkpoint(note, key):
    lines = open_note(note, key).split("\n")
    if len(lines) < 4:
        raise Fail("checkpoint", "fewer than three lines")
    origin, size, root = lines[0], lines[1], lines[2]
    if origin != key[0]:
        raise Fail("checkpoint", f"origin {origin!r} is not the key's name {key[0]!r}")
    if not size.isdigit() or str(int(size)) != size:
        raise Fail("checkpoint", "the size is not a decimal number")
    return {"origin": origin, "size": int(size), "root": hash32(root, "checkpoint")}


def leaf_hash(data):
    return hashlib.sha256(b"\x00" + data).digest()


def node_hash(left, right):
    return hashlib.sha256(b"\x01" + left + right).digest()


def verify_inclusion(index, size, leaf, path, root):
    """RFC 9162, 2.1.3.2."""
    if index >= size:
        return False
    fn, sn, r = index, size - 1, leaf
    for p in path:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            r = node_hash(p, r)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            r = node_hash(r, p)
        fn >>= 1
        sn >>= 1
    return sn == 0 and r == root


def verify_consistency(first, second, path, first_root, second_root):
    """RFC 9162, 2.1.4.2; the contract adds: from size 0, the empty proof."""
    if first == 0:
        return not path and first_root == hashlib.sha256(b"").digest()
    if first > second:
        return False
    if first == second:
        return not path and first_root == second_root
    if not path:
        return False
    if first & (first - 1) == 0:  # a power of two: the old root is the proof's first node
        path = [first_root] + list(path)
    fn, sn = first - 1, second - 1
    while fn & 1:
        fn >>= 1
        sn >>= 1
    fr = sr = path[0]
    for c in path[1:]:
        if sn == 0:
            return False
        if fn & 1 or fn == sn:
            fr = node_hash(c, fr)
            sr = node_hash(c, sr)
            if not fn & 1:
                while fn & 1 == 0 and fn != 0:
                    fn >>= 1
                    sn >>= 1
        else:
            sr = node_hash(sr, c)
        fn >>= 1
        sn >>= 1
    return sn == 0 and fr == first_root and sr == second_root


def micros(rfc3339):
    t = datetime.datetime.fromisoformat(rfc3339.replace("Z", "+00:00"))
    epoch = datetime.datetime(1970, 1, 1, tzinfo=datetime.timezone.utc)
    return (t - epoch) // datetime.timedelta(microseconds=1)


def text_field(s):
    if s is None:
        return struct.pack(">I", 0xFFFFFFFF)
    b = s.encode("utf-8")
    return struct.pack(">I", len(b)) + b


def leaf_input(d, body_sha256):
    """The contract's leaf: u64be(seq) || i64be(µs) || u32be(len key) || key || action || status || body_sha256."""
    key = d["key"].encode("utf-8")
    status = b"\x00" if d["status_code"] is None else b"\x01" + struct.pack(">i", d["status_code"])
    return (
        struct.pack(">Q", d["seq"])
        + struct.pack(">q", micros(d["received_at"]))
        + struct.pack(">I", len(key))
        + key
        + text_field(d["action"])
        + status
        + body_sha256
    )


def check_evidence(doc, key):
    cp = open_checkpoint(doc["checkpoint"], key)
    if cp["size"] != doc["tree_size"]:
        raise Fail("tree_size", f"the document says {doc['tree_size']}, the checkpoint {cp['size']}")
    d = doc["delivery"]
    body, body_sha256 = b64(d["body"], "body"), hash32(d["body_sha256"], "body")
    if hashlib.sha256(body).digest() != body_sha256:
        raise Fail("body", "the raw body does not hash to body_sha256")
    if doc["leaf_index"] != d["seq"] - 1:
        raise Fail("leaf", "leaf_index is not seq - 1")
    leaf = leaf_hash(leaf_input(d, body_sha256))
    if leaf != hash32(doc["leaf_hash"], "leaf"):
        raise Fail("leaf", "the leaf recomputed from the delivery is not leaf_hash")
    path = [hash32(h, "audit_path") for h in doc["inclusion"]]
    if not verify_inclusion(doc["leaf_index"], doc["tree_size"], leaf, path, cp["root"]):
        raise Fail("audit_path", "the inclusion proof does not lead to the checkpoint's root")
    # The command's derivation from the body is the normalization rules' business; an independent
    # checker can at least see the command and its result in the raw body.
    c = doc["command"]
    raw = body.decode("utf-8", "replace")
    if json.dumps(c["command"])[1:-1] not in raw and c["command"] not in raw:
        raise Fail("command", "the command does not appear in the raw body")
    return {"ok": True, "origin": cp["origin"], "tree_size": cp["size"], "seq": d["seq"], "command": c["id"]}


def main(argv):
    try:
        mode = argv[1]
        key = parse_key(argv[2])
        if mode == "checkpoint":
            cp = open_checkpoint(open(argv[3], encoding="utf-8").read(), key)
            out = {"ok": True, "origin": cp["origin"], "tree_size": cp["size"], "root": base64.b64encode(cp["root"]).decode()}
        elif mode == "evidence":
            out = check_evidence(json.load(open(argv[3], encoding="utf-8")), key)
        elif mode == "consistency":
            old = open_checkpoint(open(argv[3], encoding="utf-8").read(), key)
            new = open_checkpoint(open(argv[4], encoding="utf-8").read(), key)
            proof = json.load(open(argv[5], encoding="utf-8"))
            if (proof["first"], proof["second"]) != (old["size"], new["size"]):
                raise Fail("consistency", "the proof is for other sizes")
            path = [hash32(h, "consistency") for h in proof["hashes"]]
            if not verify_consistency(old["size"], new["size"], path, old["root"], new["root"]):
                raise Fail("consistency", "the new tree does not extend the old one")
            out = {"ok": True, "first": old["size"], "second": new["size"]}
        else:
            raise Fail("usage", __doc__)
    except Fail as e:
        print(f"FAIL {e}", file=sys.stderr)
        return 1
    except (IndexError, KeyError, TypeError, ValueError, OSError) as e:
        print(f"FAIL document: {e!r}", file=sys.stderr)
        return 1
    print(json.dumps(out))
    return 0


if __name__ == "__main__":
    sys.exit(main(sys.argv))
