// hyco-ws listener in front of a TCP service, as a Hybrid Connections
// listener relaying to a net.tcp host would be: each accepted sender gets a
// TCP connection to TO (HOST:PORT); binary messages become bytes and bytes
// binary messages; either side's end closes the other.
// usage: node ws-to-tcp.js BASE PATH KEYNAME KEY TO
// Prints "listening" when its control channel is open.
const WebSocket = require('hyco-ws');
const net = require('net');
const [base, path, keyName, key, to] = process.argv.slice(2);
const [host, port] = [to.slice(0, to.lastIndexOf(':')), parseInt(to.slice(to.lastIndexOf(':') + 1), 10)];
const uri = `${base}/$hc/${path}?sb-hc-action=listen`;
const token = WebSocket.createRelayToken(`http://${new URL(base).hostname}/${path}`, keyName, key);
const server = WebSocket.createRelayedServer({ server: uri, token }, (ws) => {
  const tcp = net.connect(port, host);
  tcp.on('data', (d) => { if (ws.readyState === 1) ws.send(d, { binary: true }); });
  tcp.on('end', () => ws.close());
  tcp.on('error', () => ws.close());
  ws.on('message', (m) => tcp.write(Buffer.from(m)));
  ws.on('close', () => tcp.end());
  ws.on('error', () => tcp.destroy());
});
server.on('listening', () => console.log('listening'));
server.on('error', (e) => console.log(`error ${e.message || e}`));
