"""Call the ICalc service of tests/peers/MonoPeer.cs (Echo, Add) with
pynettcp's Channel API, an independent net.tcp client.
usage: python pynettcp_calc.py net.tcp://HOST:PORT/calc
Prints one line per call: the operation, then the reply body as XML."""
import sys

from pynettcp import Channel, SessionStr
from pynettcp.xmltree import events_to_string

NS = "urn:relay-gateway:test"


def operation(name, params):
    def write(w):
        w.start_element("", SessionStr(name), NS)
        for pname, value in params:
            w.start_element("", SessionStr(pname), NS)
            w.value(value)
            w.end_element()
        w.end_element()
    return write


with Channel(sys.argv[1], timeout=20) as ch:
    for op, params in [("Echo", [("text", "hello from pynettcp")]), ("Add", [("a", 40), ("b", 2)])]:
        r = ch.call(action=f"{NS}/ICalc/{op}", body=operation(op, params))
        print(op, "fault" if r.is_fault else "ok", events_to_string(r.body_events))
