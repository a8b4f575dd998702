// hyco-ws sender: sends a text message and a 200 KB binary message and checks
// the echoes byte for byte. usage: node ws-sender.js BASE PATH KEYNAME KEY [COUNT]
// Prints "ok N" after N round trips of each, or "fail: reason" (exit 1).
const WebSocket = require('hyco-ws');
const crypto = require('crypto');
const [base, path, keyName, key, count = '1'] = process.argv.slice(2);
const uri = `${base}/$hc/${path}?sb-hc-action=connect`;
const token = WebSocket.createRelayToken(`http://${new URL(base).hostname}/${path}`, keyName, key);
const n = parseInt(count, 10);
const fail = (r) => { console.log(`fail: ${r}`); process.exit(1); };
setTimeout(() => fail('timeout'), 30000);
const ws = WebSocket.relayedConnect(uri, token, () => {
  let i = 0;
  const text = 'hello through the gateway ✓';
  const blob = crypto.randomBytes(200 * 1024);
  let expectText = true;
  const next = () => {
    if (i === n) { console.log(`ok ${n}`); ws.close(); process.exit(0); }
    expectText = true;
    ws.send(text);
  };
  ws.on('message', (m, flags) => {
    if (expectText) {
      if (flags && flags.binary) fail('text came back as binary');
      if (m.toString() !== text) fail('text differs');
      expectText = false;
      ws.send(blob, { binary: true });
    } else {
      if (!(flags && flags.binary)) fail('binary came back as text');
      if (!Buffer.from(m).equals(blob)) fail('binary differs');
      i += 1;
      next();
    }
  });
  next();
});
ws.on('error', (e) => fail(e.message));
