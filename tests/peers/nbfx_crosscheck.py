"""Cross-check relay-gateway's binary XML against two independent
implementations, PyPI `wcf` 0.5.5 (python-wcfbin) and `pynettcp` 0.1.0.

usage: nbfx_crosscheck.py RELAY_GATEWAY_BINARY XML_CASE...

For each XML envelope:
  1. our msbin1 (`encode --envelope`) decoded by wcf and by pynettcp equals the source;
  2. our msbinsession1 (`encode --session`) decoded by pynettcp's SessionCodec equals it;
  3. wcf's own encoding of the source (its record classes, built from the DOM: its
     xml2records module does not import in 0.5.5), decoded by us (`decode --envelope`),
     equals the source;
  4. pynettcp's session encoding, decoded by us (`decode --envelope --session`), equals it.
Comparison is on canonical XML (C14N 2.0, whitespace-only text stripped).
Prints one line per failure and a closing 'N passed, N failed' line; exits 1 on failure.
"""
import html
import io
import re
import subprocess
import sys
import xml.dom.minidom as minidom
import xml.etree.ElementTree as ET

import wcf.records.attributes  # noqa: F401  (registers record types)
import wcf.records.elements  # noqa: F401
import wcf.records.text  # noqa: F401
from wcf.records import dump_records, print_records
from wcf.records.attributes import AttributeRecord, ShortAttributeRecord, ShortXmlnsAttributeRecord, XmlnsAttributeRecord
from wcf.records.base import Record
from wcf.records.elements import ElementRecord, ShortElementRecord
from wcf.records.text import Chars8TextRecord, Chars16TextRecord, Chars32TextRecord
from pynettcp.nbfs import SessionCodec
from pynettcp.nbfx import BinaryXmlReader
from pynettcp.xmltree import events_to_string

BIN = sys.argv[1]
passed = failed = 0


def c14n(text):
    return ET.canonicalize(text, strip_text=True, rewrite_prefixes=True)


GUID = r"[0-9a-f]{8}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{4}-[0-9a-f]{12}"


def pynettcp_xml(events):
    """pynettcp prints UniqueIdText without its `urn:uuid:` prefix (a known quirk,
    wcf/PROTOCOL.md §12.6); put it back inside WS-Addressing ids."""
    text = events_to_string(events)
    return re.sub(rf"(MessageID>|RelatesTo>)({GUID})<", r"\1urn:uuid:\2<", text)


def run(args, data):
    p = subprocess.run([BIN] + args, input=data, capture_output=True, timeout=30)
    if p.returncode != 0:
        raise RuntimeError(f"{args}: {p.stderr.decode(errors='replace').strip()}")
    return p.stdout


XML_ENTITIES = ("lt", "gt", "amp", "quot", "apos")


def wcf_print(data):
    """wcf's XML, with the HTML named entities it prints (`&uuml;`) turned back
    into characters so that the text is XML again."""
    out = io.StringIO()
    print_records(Record.parse(io.BytesIO(data)), fp=out)
    return re.sub(r"&(\w+);", lambda m: m.group(0) if m.group(1) in XML_ENTITIES else html.unescape(m.group(0)), out.getvalue())


def check(case, what, got, want):
    global passed, failed
    try:
        ok = c14n(got) == c14n(want)
    except ET.ParseError as e:
        ok, got = False, f"(not XML: {e}) {got[:300]}"
    if ok:
        passed += 1
    else:
        failed += 1
        print(f"FAIL {case}: {what}\n  got:  {c14n(got) if ok else got[:600]}\n  want: {c14n(want)[:600]}")


def build_from_dom(writer, node):
    """Write a minidom element through pynettcp's writer, prefixes as written."""
    writer.start_element(node.prefix or "", node.localName)
    for name, value in node.attributes.items():
        if name == "xmlns":
            writer.xmlns("", value)
        elif name.startswith("xmlns:"):
            writer.xmlns(name[6:], value)
    for name, value in node.attributes.items():
        if name == "xmlns" or name.startswith("xmlns:"):
            continue
        prefix, _, local = name.rpartition(":")
        writer.attribute(prefix, local, value)
    for child in node.childNodes:
        if child.nodeType == child.ELEMENT_NODE:
            build_from_dom(writer, child)
        elif child.nodeType in (child.TEXT_NODE, child.CDATA_SECTION_NODE) and child.data.strip():
            writer.write_string(child.data)
    writer.end_element()


def wcf_text(value):
    n = len(value.encode())
    return Chars8TextRecord(value) if n < 0x100 else Chars16TextRecord(value) if n < 0x10000 else Chars32TextRecord(value)


def wcf_build(node):
    """A minidom element as a wcf record tree, inline strings only."""
    el = ElementRecord(node.prefix, node.localName) if node.prefix else ShortElementRecord(node.localName)
    for name, value in node.attributes.items():
        if name == "xmlns":
            el.attributes.append(ShortXmlnsAttributeRecord(value))
        elif name.startswith("xmlns:"):
            el.attributes.append(XmlnsAttributeRecord(name[6:], value))
        elif ":" in name:
            prefix, local = name.split(":", 1)
            el.attributes.append(AttributeRecord(prefix, local, wcf_text(value)))
        else:
            el.attributes.append(ShortAttributeRecord(name, wcf_text(value)))
    for child in node.childNodes:
        if child.nodeType == child.ELEMENT_NODE:
            el.childs.append(wcf_build(child))
        elif child.nodeType in (child.TEXT_NODE, child.CDATA_SECTION_NODE) and child.data.strip():
            el.childs.append(wcf_text(child.data))
    return el  # dump_records writes the end record (or the WithEndElement form) itself


for path in sys.argv[2:]:
    case = path.rsplit("/", 1)[-1]
    src = open(path, encoding="utf-8").read()
    try:
        ours = run(["encode", "--envelope", "-"], src.encode())
        check(case, "ours->wcf", wcf_print(ours), src)
        check(case, "ours->pynettcp", pynettcp_xml(BinaryXmlReader(ours).read()), src)

        ours_s = run(["encode", "--session", "--envelope", "-"], src.encode())
        check(case, "ours(session)->pynettcp", pynettcp_xml(SessionCodec().decode(ours_s)), src)

        root = minidom.parseString(src.encode()).documentElement
        theirs = dump_records([wcf_build(root)])
        check(case, "wcf->ours", run(["decode", "--envelope", "-"], theirs).decode(), src)

        payload = SessionCodec().encode(lambda w: build_from_dom(w, root))
        check(case, "pynettcp(session)->ours", run(["decode", "--envelope", "--session", "-"], payload).decode(), src)
    except Exception as e:  # one broken case must not hide the others
        failed += 1
        print(f"FAIL {case}: {type(e).__name__}: {e}")

print(f"{passed} passed, {failed} failed")
sys.exit(1 if failed or not passed else 0)
