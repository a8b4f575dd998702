// A WCF relay listener played by rhea, an independent AMQP 1.0 client,
// attaching exactly as Microsoft.ServiceBus.dll does (wcf/PROTOCOL.md
// §2.1, §11.2): TLS, SASL EXTERNAL, open with the "<ns>-relay" hostname, a
// "RelayLink_<guid>:out" sender and ":in" receiver on the relay address with
// the com.microsoft:* properties, credit 1000. Every received message is
// accepted (settled) and printed; so is every link error.
//
// With WS=1 the connection is AMQP over WebSocket instead (sub-protocol
// wsrelayedamqp on wss://HOST:PORT/$servicebus/websocket, §11.5).
//
// Environment: HOST, PORT, CA (PEM file), ADDRESS (sb://ns/path/), TOKEN,
// TYPE (listener type, default RelayedConnection), COUNT (link pairs,
// default 1), EXTRA (JSON object of extra attach properties).
// Output: one JSON object per line: {"event":"attached","index":i},
// {"event":"error","index":i,"condition":...,"description":...},
// {"event":"message","index":i,"data":"<base64 of the data section>"},
// {"event":"closed"}.
'use strict';
const fs = require('fs');
const crypto = require('crypto');
const rhea = require('rhea');
const sasl = require('rhea/lib/sasl.js');

const env = process.env;
const ns = new URL(env.ADDRESS).hostname;
const [first, ...rest] = ns.split('.');
const out = (o) => process.stdout.write(JSON.stringify(o) + '\n');

const mechanisms = sasl.client_mechanisms();
mechanisms.enable_external();
const container = rhea.create_container({ id: 'RelayConnection_' + crypto.randomUUID() });
const ca = [fs.readFileSync(env.CA)];
const transport = env.WS
  ? {
      connection_details: container.websocket_connect(require('ws'))(
        `wss://${env.HOST}:${env.PORT}/$servicebus/websocket`, ['wsrelayedamqp'], { ca, servername: ns }),
    }
  : { host: env.HOST, port: Number(env.PORT), transport: 'tls', servername: ns, ca };
const conn = container.connect(Object.assign(transport, {
  hostname: [first + '-relay', ...rest].join('.'),
  sasl_mechanisms: mechanisms,
  max_frame_size: 65536,
  channel_max: 8191,
  reconnect: false,
}));

const count = Number(env.COUNT || 1);
const extra = env.EXTRA ? JSON.parse(env.EXTRA) : {};
const properties = Object.assign({
  'com.microsoft:swt': env.TOKEN,
  'com.microsoft:client-agent': 'ServiceBus/3.0.51272.9;',
  'com.microsoft:dynamic-relay': true,
  'com.microsoft:listener-type': env.TYPE || 'RelayedConnection',
  'com.microsoft:tracking-id': crypto.randomUUID(),
}, extra);

for (let i = 0; i < count; i++) {
  const name = 'RelayLink_' + crypto.randomUUID();
  const report = (ctx) => {
    const e = ctx.sender ? ctx.sender.error : ctx.receiver.error;
    out({ event: 'error', index: i, condition: e && e.condition, description: e && e.description });
  };
  const sender = conn.open_sender({ name: name + ':out', target: { address: env.ADDRESS }, properties });
  sender.on('sender_error', report);
  const receiver = conn.open_receiver({
    name: name + ':in',
    source: { address: env.ADDRESS },
    properties,
    credit_window: 1000,
    autoaccept: true,
  });
  receiver.on('receiver_open', (ctx) => {
    // A refusal is an attach without a source, then a detach with the error.
    const source = ctx.receiver.remote.attach.source;
    if (source && source.address) out({ event: 'attached', index: i });
  });
  receiver.on('receiver_error', report);
  receiver.on('message', (ctx) => {
    const body = ctx.message.body;
    const data = body && body.typecode === 0x75 ? body.content : body;
    out({ event: 'message', index: i, data: Buffer.from(data).toString('base64') });
  });
}
conn.on('connection_error', (ctx) => {
  const e = ctx.connection.error;
  out({ event: 'connection_error', condition: e && e.condition, description: e && e.description });
});
conn.on('disconnected', (ctx) => {
  out({ event: 'closed', error: ctx.error ? String(ctx.error) : null });
  process.exit(0);
});
process.stdin.on('end', () => conn.close());
process.stdin.resume();
