'use strict';
// A stand-in Rocket.Chat for the real-client tests (test/clients_test.go):
// the npm `sockjs` server, which Meteor and so Rocket.Chat serve DDP with,
// at /sockjs (its raw WebSocket endpoint at /sockjs/websocket and, as
// Meteor's, /websocket), a small
// Rocket.Chat-like DDP on it, and a few REST routes. It prints
// "listening <port>" once it accepts connections.
//
// Environment: HEARTBEAT_MS, sockjs's heartbeat_delay, which is also how
// long it holds an xhr-polling request with nothing to send (default
// 25000, sockjs's and Meteor's default).

const fs = require('fs');
const http = require('http');
const path = require('path');
const sockjs = require('sockjs');

const heartbeat = Number(process.env.HEARTBEAT_MS || 25000);

// DDP (https://github.com/meteor/meteor/blob/devel/packages/ddp/DDP.md),
// as much of it as a Rocket.Chat client needs to connect and call.
const methods = {
  // echo answers its first parameter after params[1] ms (default 0).
  echo: (params) => new Promise((resolve) => setTimeout(() => resolve(params[0]), Number(params[1] || 0))),
};

function ddp(conn) {
  let session = null;
  const send = (m) => conn.write(JSON.stringify(m));
  // sockjs sends no heartbeat on its raw WebSocket endpoint; there DDP's
  // own does (Meteor's server pings an idle connection the same way).
  if (conn.protocol === 'websocket-raw') {
    const t = setInterval(() => send({ msg: 'ping' }), heartbeat);
    conn.on('close', () => clearInterval(t));
  }
  conn.on('data', (raw) => {
    let m;
    try {
      m = JSON.parse(raw);
    } catch (e) {
      send({ msg: 'error', reason: 'not JSON' });
      return;
    }
    switch (m.msg) {
      case 'connect':
        session = 'x';
        send({ msg: 'connected', session });
        break;
      case 'ping':
        send(m.id === undefined ? { msg: 'pong' } : { msg: 'pong', id: m.id });
        break;
      case 'pong':
        break;
      case 'method': {
        const fn = methods[m.method];
        if (!session || !fn) {
          send({ msg: 'result', id: m.id, error: { error: 404, reason: `Method '${m.method}' not found` } });
          break;
        }
        fn(m.params || []).then((result) => {
          send({ msg: 'result', id: m.id, result });
          send({ msg: 'updated', methods: [m.id] });
        });
        break;
      }
      default:
        send({ msg: 'error', reason: 'unknown message', offendingMessage: m });
    }
  });
}

const sock = sockjs.createServer({
  heartbeat_delay: heartbeat,
  disconnect_delay: 5000,
  // The iframe transports' page loads sockjs-client from here (through
  // sessiongate) instead of sockjs's default CDN.
  sockjs_url: '/browser/sockjs.min.js',
  log: () => {},
});
sock.on('connection', ddp);

function json(res, status, body) {
  const b = JSON.stringify(body);
  res.writeHead(status, { 'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(b) });
  res.end(b);
}

// The browser rig's page (test/clients/browser.js opens it through
// sessiongate) and sockjs-client's browser bundle.
const files = {
  '/browser/index.html': [path.join(__dirname, 'browser', 'index.html'), 'text/html; charset=utf-8'],
  '/browser/page.js': [path.join(__dirname, 'browser', 'page.js'), 'application/javascript'],
  '/browser/sockjs.min.js': [require.resolve('sockjs-client/dist/sockjs.min.js'), 'application/javascript'],
};

// Every xhr-streaming request by sockjs session id: when it came and when
// its connection closed, so a test can tell how soon sessiongate lets go of
// a stream whose client left (GET /test/stream?id=ID, asked directly, not
// through sessiongate).
const streams = new Map();

const server = http.createServer((req, res) => {
  const url = new URL(req.url, 'http://upstream');
  const file = req.method === 'GET' && files[url.pathname];
  if (file) {
    const b = fs.readFileSync(file[0]);
    res.writeHead(200, { 'Content-Type': file[1], 'Content-Length': b.length, 'Cache-Control': 'no-store' });
    res.end(b);
    return;
  }
  if (req.method === 'GET' && url.pathname === '/test/stream') {
    const s = streams.get(url.searchParams.get('id'));
    json(res, 200, s ? { known: true, opened: s.opened, closed: s.closed, now: Date.now() } : { known: false, now: Date.now() });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/api/info') {
    json(res, 200, { version: '6.0.0', success: true });
    return;
  }
  if (req.method === 'POST' && url.pathname === '/api/v1/echo') {
    // The request body back, with how it was framed.
    const chunks = [];
    req.on('data', (c) => chunks.push(c));
    req.on('end', () => {
      const body = Buffer.concat(chunks).toString();
      json(res, 200, { body, chunked: req.headers['transfer-encoding'] === 'chunked', success: true });
    });
    return;
  }
  if (req.method === 'GET' && url.pathname === '/api/v1/slow') {
    // An answer after ms milliseconds, as a long poll is.
    const ms = Number(url.searchParams.get('ms') || 0);
    setTimeout(() => json(res, 200, { waited: ms, success: true }), ms);
    return;
  }
  json(res, 404, { success: false, error: 'not found' });
});
sock.installHandlers(server, { prefix: '/sockjs' });
// Meteor also serves its raw WebSocket at /websocket, where
// @rocket.chat/ddp-client connects. (After installHandlers, which would
// run its handler before this one.)
server.prependListener('upgrade', (req) => {
  if (req.url === '/websocket') req.url = '/sockjs/websocket';
});
// Watches, does not answer: sockjs's handler (installed above, so it runs
// after this one) does.
server.prependListener('request', (req) => {
  const m = /^\/sockjs\/[^/]+\/([^/]+)\/xhr_streaming(\?|$)/.exec(req.url);
  if (!m) return;
  const s = { opened: Date.now(), closed: 0 };
  streams.set(m[1], s);
  req.socket.once('close', () => { s.closed = Date.now(); });
});
server.keepAliveTimeout = 65000;
server.listen(0, '127.0.0.1', () => {
  console.log(`listening ${server.address().port}`);
});
process.on('SIGTERM', () => process.exit(0));
