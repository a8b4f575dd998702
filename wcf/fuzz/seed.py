"""Seed the fuzz corpora from fixtures/wcf: net.tcp streams for `framing`,
envelopes (and the envelopes found inside streams) for `nbfx_reader`, XML
cases for `xml_to_nbfx`, the SDK listener's AMQP conversation for `amqp`,
the SDK's relayed-port preambles and messages for `relayed`. Run from
wcf/fuzz: python3 seed.py"""
import glob
import os
import re

ROOT = "../../fixtures/wcf"


def streams(path):
    out = {"C": bytearray(), "S": bytearray()}
    cur = "C"
    for line in open(path):
        if line.startswith(("C>S", "S>C")):
            cur = line[0]
        m = re.match(r"^  [0-9a-f]{4,8}  (.{0,47})", line)
        if m:
            out[cur] += bytes.fromhex(m.group(1).replace(" ", ""))
    return out


for t in ("framing", "nbfx_reader", "xml_to_nbfx", "web_incoming", "session_transcode", "amqp", "relayed"):
    os.makedirs(f"corpus/{t}", exist_ok=True)
for path in glob.glob(f"{ROOT}/*.hex.txt") + glob.glob(f"{ROOT}/invalid/*.hex.txt"):
    for d, data in streams(path).items():
        if not data:
            continue
        name = os.path.basename(path) + d
        target = "nbfx_reader" if data[0] >= 0x40 else "framing"
        open(f"corpus/{target}/{name}", "wb").write(data)
        start = data.find(b"\x56\x02\x0b")
        if start > 0:
            open(f"corpus/nbfx_reader/{name}-envelope", "wb").write(data[start:])
for path in glob.glob(f"{ROOT}/xml/*.xml"):
    open(f"corpus/xml_to_nbfx/{os.path.basename(path)}", "wb").write(open(path, "rb").read())
for path in glob.glob(f"{ROOT}/fuzz/*.bin"):
    target = os.path.basename(path).split("-")[0]
    open(f"corpus/{target}/{os.path.basename(path)}", "wb").write(open(path, "rb").read())
# Relayed web envelopes (the captures' UnsizedEnvelope payloads) for
# web_incoming; session payloads from the net.tcp captures for session_transcode.
for path in glob.glob(f"{ROOT}/http/*.txt"):
    data = bytearray()
    for line in open(path):
        m = re.match(r"^    msbin1 envelope", line)
        m2 = re.match(r"^  [0-9a-f]{6}  (.{0,47})", line)
        if m2:
            data += bytes.fromhex(m2.group(1).replace(" ", ""))
    start = 0
    while True:
        i = data.find(b"\x56\x02\x0b", start)
        if i < 0:
            break
        open(f"corpus/web_incoming/{os.path.basename(path)}-{i}", "wb").write(data[i:])
        start = i + 1
for path in glob.glob(f"{ROOT}/*session*.hex.txt") + glob.glob(f"{ROOT}/mono-nettcp-*.hex.txt"):
    for d, data in streams(path).items():
        i = data.find(b"\x06")
        if i >= 0:
            open(f"corpus/session_transcode/{os.path.basename(path)}{d}", "wb").write(data[i + 2:])
# The SDK listener's AMQP frames, each direction, for amqp; the SDK's 9352
# preambles followed by its RelayedConnect and RelayedAccept for relayed.
for path in glob.glob(f"{ROOT}/amqp/*.hex.txt"):
    for d, data in streams(path).items():
        if data:
            open(f"corpus/amqp/{os.path.basename(path)}{d}", "wb").write(data)
for side, msg in (("client", "relayedconnect"), ("listener", "relayedaccept")):
    pre = streams(f"{ROOT}/sdk5-{side}-9352-preamble.hex.txt")["C"]
    body = streams(f"{ROOT}/sdk5-{side}-9352-{msg}.hex.txt")["C"]
    open(f"corpus/relayed/sdk5-{side}", "wb").write(pre + body)
