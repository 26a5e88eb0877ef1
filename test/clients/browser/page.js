'use strict';
// The page test/clients/browser.js opens in headless Chromium, served
// through sessiongate by upstream.js. Its query says what to do:
//
//   ?mode=sockjs&transport=T&idle=MS&user=U&token=K&session=S
//     sessions/info with a valid token (in the event loop, that hands the
//     connection over to the fasthttp path), then DDP over sockjs-client
//     restricted to transport T: connect, ping, a delayed method call, a
//     burst of calls of many sizes, MS ms of silence, one more call.
//   ?mode=rest&user=U&token=K&session=S
//     sessions/info with the valid token, a wrong one and none.
//   ?mode=drop&id=ID
//     DDP over xhr-streaming with sockjs session id ID, then stays open:
//     the driver closes the tab mid-stream.
//
// window.result is a promise of the report; window.ready (drop) resolves
// once the stream carries DDP.

(function () {
  const q = new URLSearchParams(location.search);
  const started = Date.now();
  const report = { mode: q.get('mode'), ok: false };
  const log = (...a) => console.log(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
  const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

  // A DDP session over sockjs-client.
  class DDP {
    constructor(sock) {
      this.sock = sock;
      this.waiters = [];
      this.closed = null;
      this.nextID = 1;
      sock.onmessage = (e) => this.message(e.data);
      sock.onclose = (e) => this.close(`close ${e.code} ${e.reason}`);
    }
    message(raw) {
      const m = JSON.parse(raw);
      if (m.msg === 'ping') {
        this.sock.send(JSON.stringify({ msg: 'pong' }));
        return;
      }
      const i = this.waiters.findIndex((w) => w.match(m));
      if (i >= 0) this.waiters.splice(i, 1)[0].resolve(m);
    }
    close(why) {
      this.closed = why;
      for (const w of this.waiters.splice(0)) w.reject(new Error(`connection closed while waiting: ${why}`));
    }
    wait(match, ms, what) {
      if (this.closed) return Promise.reject(new Error(`connection closed before ${what}: ${this.closed}`));
      return new Promise((resolve, reject) => {
        const w = { match };
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
      this.sock.send(JSON.stringify({ msg: 'method', method, params, id }));
      const m = await p;
      if (m.error) throw new Error(`${method}: ${JSON.stringify(m.error)}`);
      return m.result;
    }
    async connect() {
      const connected = this.wait((m) => m.msg === 'connected', 10000, 'connected');
      this.sock.send(JSON.stringify({ msg: 'connect', version: '1', support: ['1', 'pre2', 'pre1'] }));
      return (await connected).session;
    }
  }

  // open connects sockjs-client over one transport and resolves when open.
  // sockjs-client's own timeout for a transport to open is otherwise about
  // 300 ms per round trip it needs (1 s for an iframe transport on
  // loopback); with one transport allowed and none to fall back to, a page
  // slowed by a busy machine would fail for nothing.
  function open(transport, opts = {}) {
    const sock = new SockJS('/sockjs', null, Object.assign({ transports: [transport], timeout: 15000 }, opts));
    return new Promise((resolve, reject) => {
      sock.onopen = () => resolve(sock);
      sock.onclose = (e) => reject(new Error(`closed before open: ${e.code} ${e.reason}`));
    });
  }

  async function info(user, token) {
    const headers = {};
    if (user !== undefined) headers['X-User-Id'] = user;
    if (token !== undefined) headers['X-Auth-Token'] = token;
    const r = await fetch(`/api/v1/sessions/info?sessionId=${encodeURIComponent(q.get('session'))}`, { headers, cache: 'no-store' });
    return { status: r.status, body: await r.text() };
  }

  async function runSockJS() {
    const transport = q.get('transport');
    report.transport = transport;
    report.info = (await info(q.get('user'), q.get('token'))).status;
    const sock = await open(transport);
    report.transport = sock.transport;
    if (sock.transport !== transport) throw new Error(`transport: got ${sock.transport}, want ${transport}`);
    const d = new DDP(sock);
    // Heartbeats during the silence below (xhr-streaming's prelude also
    // counts as one, at the start).
    report.heartbeats = 0;
    let idle = false;
    sock.addEventListener('heartbeat', () => {
      log('heartbeat');
      if (idle) report.heartbeats++;
    });
    report.session = await d.connect();
    const pong = d.wait((m) => m.msg === 'pong' && m.id === 'p1', 10000, 'pong');
    sock.send(JSON.stringify({ msg: 'ping', id: 'p1' }));
    await pong;
    report.pong = true;
    const delayed = await d.call('echo', ['delayed', 1500]);
    if (delayed !== 'delayed') throw new Error(`delayed call: got ${JSON.stringify(delayed)}`);
    const sizes = [];
    for (let n = 1; n <= 64 << 10; n *= 4) sizes.push(n, n + 1);
    const want = sizes.map((n, i) => String.fromCharCode(97 + (i % 26)).repeat(n));
    const got = await Promise.all(want.map((s) => d.call('echo', [s, 0])));
    got.forEach((g, i) => {
      if (g !== want[i]) throw new Error(`burst call ${i} (${want[i].length} bytes): got ${String(g).length} bytes`);
    });
    report.burst = got.length;
    const idleMs = Number(q.get('idle') || 0);
    log(`idle for ${idleMs} ms`);
    idle = true;
    await sleep(idleMs);
    idle = false;
    if (d.closed) throw new Error(`connection closed while idle: ${d.closed}`);
    const after = await d.call('echo', ['after idle', 0]);
    if (after !== 'after idle') throw new Error(`call after idle: got ${JSON.stringify(after)}`);
    report.afterIdle = true;
    // The longest request this page saw end (a held poll, for the polling
    // transports; the iframe transports' requests are the iframe's).
    report.longestRequestMs = Math.round(Math.max(0, ...performance.getEntriesByType('resource')
      .filter((e) => e.name.includes('/sockjs/')).map((e) => e.duration)));
    sock.close();
  }

  async function runREST() {
    const user = q.get('user');
    const token = q.get('token');
    report.valid = await info(user, token);
    report.wrongToken = await info(user, token + 'x');
    report.noHeaders = await info();
  }

  let ready;
  window.ready = new Promise((r) => { ready = r; });

  async function runDrop() {
    const sock = await open('xhr-streaming', { sessionId: () => q.get('id') });
    const d = new DDP(sock);
    report.session = await d.connect();
    if ((await d.call('echo', ['streaming', 0])) !== 'streaming') throw new Error('call on the stream failed');
    ready(q.get('id'));
    // Stays until the tab is closed.
    await new Promise(() => {});
  }

  const run = { sockjs: runSockJS, rest: runREST, drop: runDrop }[report.mode];
  window.result = (run ? run() : Promise.reject(new Error(`unknown mode ${report.mode}`))).then(
    () => { report.ok = true; },
    (e) => { report.error = String(e && e.stack ? e.stack : e); ready(null); },
  ).then(() => {
    report.seconds = (Date.now() - started) / 1000;
    return report;
  });
})();
