// hyco-ws listener that echoes every message back unchanged (same type, same bytes).
// usage: node ws-listener.js BASE PATH KEYNAME KEY [NAME]
// Prints "listening NAME" when its control channel is open and "accepted NAME" per connection.
const WebSocket = require('hyco-ws');
const [base, path, keyName, key, name = 'listener'] = process.argv.slice(2);
const uri = `${base}/$hc/${path}?sb-hc-action=listen`;
const token = WebSocket.createRelayToken(`http://${new URL(base).hostname}/${path}`, keyName, key);
const server = WebSocket.createRelayedServer({ server: uri, token }, (ws) => {
  console.log(`accepted ${name}`);
  ws.on('message', (m, flags) => ws.send(m, { binary: !!(flags && flags.binary) }));
  ws.on('error', () => {});
});
server.on('listening', () => console.log(`listening ${name}`));
server.on('error', (e) => console.log(`error ${name} ${e.message || e}`));
process.on('SIGTERM', () => { try { server.close(); } catch (e) {} process.exit(0); });
