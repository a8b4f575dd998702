// hyco-https listener. usage: node https-listener.js BASE PATH KEYNAME KEY
// Answers every request with JSON {method, url, host, length, sha256, header}
// (header: the X-Test request header); GET .../big?n=N answers N bytes
// (byte i = i % 251) instead. Prints "listening" when the control channel is open.
const https = require('hyco-https');
const crypto = require('crypto');
const [base, path, keyName, key] = process.argv.slice(2);
const uri = `${base}/$hc/${path}?sb-hc-action=listen`;
const server = https.createRelayedServer(
  { server: uri, token: () => https.createRelayToken(`http://${new URL(base).hostname}/${path}`, keyName, key) },
  (req, res) => {
    const hash = crypto.createHash('sha256');
    let length = 0;
    req.on('data', (c) => { hash.update(c); length += c.length; });
    req.on('end', () => {
      const m = /\/big\?n=(\d+)/.exec(req.url);
      if (m) {
        const n = parseInt(m[1], 10);
        const body = Buffer.alloc(n);
        for (let i = 0; i < n; i++) body[i] = i % 251;
        res.setHeader('Content-Type', 'application/octet-stream');
        res.end(body);
        return;
      }
      res.setHeader('Content-Type', 'application/json');
      res.setHeader('X-Listener', 'hyco-https');
      res.statusCode = req.headers['x-status'] ? parseInt(req.headers['x-status'], 10) : 200;
      res.end(JSON.stringify({ method: req.method, url: req.url, host: req.headers.host, length, sha256: hash.digest('hex'), header: req.headers['x-test'] || null }));
    });
  });
server.listen((err) => { if (err) console.log(`error ${err}`); });
server.on('listening', () => console.log('listening'));
server.on('error', (e) => console.log(`error ${e.message || e}`));
process.on('SIGTERM', () => process.exit(0));
