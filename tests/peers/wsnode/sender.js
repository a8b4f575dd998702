// Throughput sender for the Hybrid Connections benchmark: BYTES in 64 KiB
// binary messages to URL, then "done"; prints Gbit/s once the sink's "ack"
// is back. Keeps at most four messages queued in ws.
// usage: node sender.js URL BYTES [TOKEN]
const WebSocket = require('ws');
const [url, bytes, token] = process.argv.slice(2);
const total = Number(bytes);
const MSG = 64 * 1024;

const ws = new WebSocket(url, token ? { headers: { ServiceBusAuthorization: token } } : {});
ws.on('error', (e) => { console.error(e.message); process.exit(1); });
ws.on('open', () => {
  const data = Buffer.alloc(MSG, 0x5a);
  const start = process.hrtime.bigint();
  let sent = 0;
  ws.on('message', (m) => {
    if (m.toString() !== 'ack') return;
    const secs = Number(process.hrtime.bigint() - start) / 1e9;
    console.log((total * 8 / secs / 1e9).toFixed(3));
    process.exit(0);
  });
  const pump = () => {
    while (sent < total) {
      ws.send(data, { binary: true });
      sent += MSG;
      if (ws.bufferedAmount > 4 * MSG) { setImmediate(pump); return; }
    }
    ws.send('done');
  };
  pump();
});
