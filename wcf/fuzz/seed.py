"""Seed the fuzz corpora from fixtures/wcf: net.tcp streams for `framing`,
envelopes (and the envelopes found inside streams) for `nbfx_reader`, XML
cases for `xml_to_nbfx`. Run from wcf/fuzz: python3 seed.py"""
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


for t in ("framing", "nbfx_reader", "xml_to_nbfx"):
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
