// Throughput sink for the Hybrid Connections benchmark: the same handler
// behind a plain ws server (the direct baseline) and behind a Hybrid
// Connections listener on the gateway (each accept dialled with ws).
// A final text "done" is answered with "ack"; everything else is counted away.
// usage: node sink.js GATEWAY_WS_BASE PATH TOKEN    prints "ready PORT"
const WebSocket = require('ws');
const [base, path, token] = process.argv.slice(2);

function sink(ws) {
  ws.on('message', (m, isBinary) => {
    if (m.length === 4 && m.toString() === 'done') ws.send('ack');
  });
  ws.on('error', () => {});
}

const server = new WebSocket.Server({ host: '127.0.0.1', port: 0 });
server.on('connection', sink);
server.on('listening', () => {
  const ctl = new WebSocket(`${base}/$hc/${path}?sb-hc-action=listen`, {
    headers: { ServiceBusAuthorization: token },
  });
  ctl.on('message', (m) => {
    const accept = JSON.parse(m.toString()).accept;
    if (accept) sink(new WebSocket(accept.address));
  });
  ctl.on('open', () => console.log(`ready ${server.address().port}`));
  ctl.on('error', (e) => { console.error(`control channel: ${e.message}`); process.exit(1); });
});
