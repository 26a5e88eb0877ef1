'use strict';
// Real clients driving sessiongate, for test/clients_test.go. Usage:
//
//   node client.js sockjs <base-url> <transport> [idle-ms]
//   node client.js ws     <base-url> [idle-ms]
//   node client.js rest   <base-url> [slow-ms]
//   node client.js rocketchat <base-url> [slow-ms]
//
// sockjs: sockjs-client (the library Meteor's and Rocket.Chat's web client
// use) over one transport (websocket, xhr-streaming, xhr-polling) to
// <base-url>/sockjs; ws: the `ws` package on the raw SockJS WebSocket
// endpoint <base-url>/sockjs/websocket. Both speak DDP: connect, ping,
// a delayed method call, a burst of calls with bodies of many sizes, then
// idle-ms of silence (the upstream's heartbeats and held polls must go
// through) and one more call on the same connection.
// rest: Node's own http client with a keep-alive agent, on one connection:
// sessiongate's own sessions/info route, then forwarded GETs, a chunked and
// a sized POST, and a GET the upstream answers after slow-ms.
// rocketchat: Rocket.Chat's SDK, DDP and REST (runRocketChat).
//
// The last line of stdout is a JSON report; the exit status is 0 only when
// every check passed.

const http = require('http');

const [mode, base, ...rest] = process.argv.slice(2);
const started = Date.now();
const log = (...a) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
const report = { mode, ok: false };

function finish(err) {
  report.ok = !err;
  if (err) report.error = String(err && err.stack ? err.stack : err);
  report.seconds = (Date.now() - started) / 1000;
  console.log(JSON.stringify(report));
  process.exit(err ? 1 : 0);
}
// A client that hangs (a connect that never completes) still reports.
setTimeout(() => finish(new Error('client did not finish in 100 s')), 100000);
process.on('uncaughtException', finish);
process.on('unhandledRejection', finish);

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// A DDP session over a message channel: send(string), and onMessage /
// onClose registration.
class DDP {
  constructor(send) {
    this.send = send;
    this.waiters = [];
    this.closed = null;
    this.nextID = 1;
    this.received = 0;
  }
  message(raw) {
    this.received++;
    const m = JSON.parse(raw);
    if (m.msg === 'ping') {
      report.pings = (report.pings || 0) + 1;
      log('DDP ping');
      this.send(JSON.stringify({ msg: 'pong' }));
      return;
    }
    const i = this.waiters.findIndex((w) => w.match(m));
    if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
  }
  close(why) {
    this.closed = why || 'closed';
    for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed while waiting: ${this.closed}`));
  }
  wait(match, ms, what) {
    if (this.closed) return Promise.reject(new Error(`connection closed before ${what}: ${this.closed}`));
    return new Promise((resolve, reject) => {
      const w = { match, resolve, reject };
      const t = setTimeout(() => {
        this.waiters.splice(this.waiters.indexOf(w), 1);
        reject(new Error(`no ${what} in ${ms} ms`));
      }, ms);
      w.resolve = (m) => { clearTimeout(t); resolve(m); };
      w.reject = (e) => { clearTimeout(t); reject(e); };
      this.waiters.push(w);
    });
  }
  async call(method, params, ms = 10000) {
    const id = String(this.nextID++);
    const p = this.wait((m) => m.msg === 'result' && m.id === id, ms, `result of ${method} #${id}`);
    this.send(JSON.stringify({ msg: 'method', method, params, id }));
    const m = await p;
    if (m.error) throw new Error(`${method}: ${JSON.stringify(m.error)}`);
    return m.result;
  }
  async run(idleMs) {
    const connected = this.wait((m) => m.msg === 'connected', 10000, 'connected');
    this.send(JSON.stringify({ msg: 'connect', version: '1', support: ['1', 'pre2', 'pre1'] }));
    report.session = (await connected).session;
    const pong = this.wait((m) => m.msg === 'pong' && m.id === 'p1', 10000, 'pong');
    this.send(JSON.stringify({ msg: 'ping', id: 'p1' }));
    await pong;
    report.pong = true;
    const delayed = await this.call('echo', ['delayed', 1500]);
    if (delayed !== 'delayed') throw new Error(`delayed call: got ${JSON.stringify(delayed)}`);
    // A burst of calls in flight at once, bodies from 1 byte to 64 KB.
    const sizes = [];
    for (let n = 1; n <= 64 << 10; n *= 4) sizes.push(n, n + 1);
    const want = sizes.map((n, i) => String.fromCharCode(97 + (i % 26)).repeat(n));
    const got = await Promise.all(want.map((s) => this.call('echo', [s, 0])));
    got.forEach((g, i) => {
      if (g !== want[i]) throw new Error(`burst call ${i} (${want[i].length} bytes): got ${String(g).length} bytes`);
    });
    report.burst = got.length;
    if (idleMs > 0) {
      log(`idle for ${idleMs} ms`);
      await sleep(idleMs);
      if (this.closed) throw new Error(`connection closed while idle: ${this.closed}`);
      const after = await this.call('echo', ['after idle', 0]);
      if (after !== 'after idle') throw new Error(`call after idle: got ${JSON.stringify(after)}`);
      report.afterIdle = true;
    }
  }
}

async function runSockJS() {
  const SockJS = require('sockjs-client');
  const [transport, idle] = rest;
  const sock = new SockJS(`${base}/sockjs`, null, { transports: [transport] });
  const d = new DDP((s) => sock.send(s));
  report.heartbeats = 0;
  sock.onmessage = (e) => d.message(e.data);
  sock.onclose = (e) => d.close(`close ${e.code} ${e.reason}`);
  sock.addEventListener('heartbeat', () => { report.heartbeats++; log('heartbeat'); });
  await new Promise((resolve, reject) => {
    sock.onopen = resolve;
    sock.onclose = (e) => reject(new Error(`closed before open: ${e.code} ${e.reason}`));
  });
  sock.onclose = (e) => d.close(`close ${e.code} ${e.reason}`);
  report.transport = sock.transport;
  if (report.transport !== transport) throw new Error(`transport: got ${report.transport}, want ${transport}`);
  await d.run(Number(idle || 0));
  sock.close();
}

async function runWS() {
  const WebSocket = require('ws');
  const [idle] = rest;
  const ws = new WebSocket(`${base.replace(/^http/, 'ws')}/sockjs/websocket`);
  const d = new DDP((s) => ws.send(s));
  ws.on('message', (data) => d.message(data.toString()));
  ws.on('close', (code, reason) => d.close(`close ${code} ${reason}`));
  await new Promise((resolve, reject) => {
    ws.once('open', resolve);
    ws.once('error', reject);
  });
  await d.run(Number(idle || 0));
  // A 1 MB frame each way.
  const big = 'z'.repeat(1 << 20);
  if ((await d.call('echo', [big, 0])) !== big) throw new Error('1 MB call: wrong result');
  report.bigFrame = true;
  ws.close();
}

// request sends one request on agent and returns {status, headers, body}.
function request(agent, method, path, opts = {}) {
  return new Promise((resolve, reject) => {
    const req = http.request(`${base}${path}`, { method, agent, headers: opts.headers || {} }, (res) => {
      const chunks = [];
      res.on('data', (c) => chunks.push(c));
      res.on('end', () => resolve({ status: res.statusCode, headers: res.headers, body: Buffer.concat(chunks).toString(), socket: res.socket }));
      res.on('error', reject);
    });
    req.on('error', reject);
    for (const part of opts.parts || []) req.write(part);
    req.end(opts.body);
  });
}

async function runREST() {
  const [slow] = rest;
  const agent = new http.Agent({ keepAlive: true, maxSockets: 1 });
  const sockets = new Set();
  const check = (what, cond, r) => {
    if (!cond) throw new Error(`${what}: got ${r.status} ${r.body}`);
    sockets.add(r.socket);
  };
  // sessiongate's own route first: its answer hands the connection over
  // to the fasthttp path when the event loop is on.
  let r = await request(agent, 'GET', '/api/v1/sessions/info?sessionId=x', { headers: { 'X-User-Id': 'u', 'X-Auth-Token': 't' } });
  check('sessions/info', r.status === 401 && JSON.parse(r.body).status === 'error', r);
  r = await request(agent, 'GET', '/api/info');
  check('GET /api/info', r.status === 200 && JSON.parse(r.body).version === '6.0.0', r);
  // Node sends a body written in parts with no length chunked, as
  // sockjs-client's xhr_send does.
  r = await request(agent, 'POST', '/api/v1/echo', { headers: { 'Content-Type': 'text/plain' }, parts: ['["a",', '"b"]'] });
  check('chunked POST', r.status === 200 && JSON.parse(r.body).body === '["a","b"]' && JSON.parse(r.body).chunked === true, r);
  const sized = 'x'.repeat(100000);
  r = await request(agent, 'POST', '/api/v1/echo', { body: sized, headers: { 'Content-Length': sized.length } });
  check('sized POST', r.status === 200 && JSON.parse(r.body).body === sized, r);
  if (slow) {
    log(`slow GET, ${slow} ms`);
    r = await request(agent, 'GET', `/api/v1/slow?ms=${slow}`);
    check('slow GET', r.status === 200 && JSON.parse(r.body).waited === Number(slow), r);
    report.slow = Number(slow);
  }
  r = await request(agent, 'GET', '/api/info');
  check('GET after', r.status === 200, r);
  report.connections = sockets.size;
  if (sockets.size !== 1) throw new Error(`kept-alive requests used ${sockets.size} connections, want 1`);
  agent.destroy();
}

// Rocket.Chat's own SDK: @rocket.chat/ddp-client's DDPSDK (DDP over a
// WebSocket at <base-url>/websocket, as Rocket.Chat's mobile and
// integration clients connect) and its REST client (@rocket.chat/api-client).
async function runRocketChat() {
  const [slow] = rest;
  // The SDK takes the WebSocket of the platform; Node 20 has none built in.
  globalThis.WebSocket = require('ws');
  const { DDPSDK } = require('@rocket.chat/ddp-client');
  const sdk = await DDPSDK.createAndConnect(base, { retryCount: 0, retryTime: 1000 });
  report.status = sdk.connection.status;
  if (report.status !== 'connected') throw new Error(`connection status: got ${report.status}`);
  const delayed = await sdk.call('echo', 'delayed', 1500);
  if (delayed !== 'delayed') throw new Error(`delayed call: got ${JSON.stringify(delayed)}`);
  const calls = await Promise.all([...Array(20).keys()].map((i) => sdk.call('echo', `call ${i}`, 10 * i)));
  calls.forEach((c, i) => {
    if (c !== `call ${i}`) throw new Error(`call ${i}: got ${JSON.stringify(c)}`);
  });
  report.calls = calls.length + 1;
  const info = await sdk.rest.get('/info');
  if (info.version !== '6.0.0') throw new Error(`rest get /info: got ${JSON.stringify(info)}`);
  const echoed = await sdk.rest.post('/v1/echo', { msg: 'hello' });
  if (JSON.parse(echoed.body).msg !== 'hello') throw new Error(`rest post /v1/echo: got ${JSON.stringify(echoed)}`);
  if (slow) {
    log(`slow REST GET, ${slow} ms`);
    const r = await sdk.rest.get('/v1/slow', { ms: slow });
    if (r.waited !== Number(slow)) throw new Error(`rest get /v1/slow: got ${JSON.stringify(r)}`);
    report.slow = Number(slow);
    // The DDP connection stayed up meanwhile.
    if ((await sdk.call('echo', 'after', 0)) !== 'after') throw new Error('call after the slow request failed');
  }
  report.rest = true;
  sdk.connection.close();
}

const run = { sockjs: runSockJS, ws: runWS, rest: runREST, rocketchat: runRocketChat }[mode];
if (!run || !base) finish(new Error('usage: node client.js sockjs|ws|rest <base-url> ...'));
else run().then(() => finish(null), finish);
