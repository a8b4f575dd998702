// A minimal Node.js WebSocket-to-WebSocket relay built on ws, the shape of
// the reference relay: each connection on PORT is paired with a new
// connection to TARGET and messages pass both ways, type kept.
// usage: node relay.js TARGET    prints "ready PORT"
const WebSocket = require('ws');
const [target] = process.argv.slice(2);

const server = new WebSocket.Server({ host: '127.0.0.1', port: 0 });
server.on('connection', (inbound, req) => {
  const outbound = new WebSocket(target + req.url);
  const queued = [];
  outbound.on('open', () => { for (const [m, b] of queued) outbound.send(m, { binary: b }); queued.length = 0; });
  inbound.on('message', (m, b) => {
    if (outbound.readyState === WebSocket.OPEN) outbound.send(m, { binary: b });
    else queued.push([m, b]);
  });
  outbound.on('message', (m, b) => inbound.send(m, { binary: b }));
  inbound.on('close', () => outbound.close());
  outbound.on('close', () => inbound.close());
  inbound.on('error', () => {});
  outbound.on('error', () => {});
});
server.on('listening', () => console.log(`ready ${server.address().port}`));
