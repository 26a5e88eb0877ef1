'use strict';
// Headless Chromium as a client of sessiongate, for test/browser_test.go:
//
//   node browser.js <chromium> <gate-port> <upstream-url> <user> <token> <session> <idle-ms>
//
// It drives the browser over the Chrome DevTools Protocol on the pipe
// Chromium opens with --remote-debugging-pipe (no port to find or to race
// for, and the browser exits when this process does), and opens, all at
// once, one tab per check, each on its own origin http://<name>.test:<gate-port>
// (a host-resolver rule maps *.test to 127.0.0.1): a browser keeps at
// most six connections per origin, and a held poll or a stream occupies
// one for the whole test.
//
// - one tab per transport sockjs-client offers in a browser
//   (browser/page.js, mode sockjs): DDP through sessiongate, idle-ms of
//   silence included;
// - a page load of GET /api/info (a REST answer the browser renders), then
//   sessiongate's sessions/info from the browser's fetch (mode rest);
// - a tab on xhr-streaming that is closed mid-stream (mode drop): how long
//   the upstream's stream connection stays open after that, asked of
//   upstream.js directly.
//
// The last line of stdout is a JSON report; every check's outcome is in
// it, the Go test judges them. The exit status is 0 when the browser ran.

const { spawn } = require('child_process');
const fs = require('fs');
const http = require('http');
const os = require('os');
const path = require('path');

const [chromium, port, upstream, user, token, session, idle] = process.argv.slice(2);
const started = Date.now();
const log = (...a) => console.error(`[${((Date.now() - started) / 1000).toFixed(1)}s]`, ...a);
const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

// Every transport sockjs-client 1.x offers in Chromium, but two: the
// xdr-* ones are Internet Explorer's; and plain htmlfile fails in Chromium
// with no proxy in between, since the sockjs server's htmlfile page sets
// document.domain, which leaves the frame cross-origin to its parent
// (iframe-htmlfile, where both sides set it, works).
const transports = [
  'websocket', 'xhr-streaming', 'eventsource', 'iframe-eventsource',
  'iframe-htmlfile', 'xhr-polling', 'iframe-xhr-polling', 'jsonp-polling',
];

const report = { ok: false, pages: {} };
let browser;
let profile;
let closing = false; // the browser's exit is expected from now on

function finish(err) {
  closing = true;
  report.ok = !err;
  if (err) report.error = String(err && err.stack ? err.stack : err);
  report.seconds = (Date.now() - started) / 1000;
  const exit = () => {
    try {
      if (profile) fs.rmSync(profile, { recursive: true, force: true, maxRetries: 5 });
    } catch (e) {
      log(`leaving the profile ${profile}: ${e.message}`);
    }
    console.log(JSON.stringify(report));
    process.exit(err ? 1 : 0);
  };
  if (!browser || browser.exitCode !== null || browser.signalCode !== null) {
    exit();
    return;
  }
  // The browser and its helpers (zygote, renderers) are one process
  // group: end them all, then remove the profile they were writing.
  browser.once('exit', exit);
  try {
    process.kill(-browser.pid, 'SIGKILL');
  } catch (e) {
    exit();
  }
}
setTimeout(() => finish(new Error('browser run did not finish in 110 s')), 110000);
process.on('uncaughtException', finish);
process.on('unhandledRejection', finish);

// A CDP connection over Chromium's pipe: messages are JSON, each ended by
// a NUL byte, written to the browser's fd 3 and read from its fd 4.
class CDP {
  constructor(out, inp) {
    this.out = out;
    this.nextID = 1;
    this.pending = new Map();
    this.listeners = new Set();
    let buf = '';
    inp.setEncoding('utf8');
    inp.on('data', (chunk) => {
      buf += chunk;
      let i;
      while ((i = buf.indexOf('\0')) >= 0) {
        const m = JSON.parse(buf.slice(0, i));
        buf = buf.slice(i + 1);
        if (m.id !== undefined) {
          const p = this.pending.get(m.id);
          this.pending.delete(m.id);
          if (m.error) p.reject(new Error(`${p.method}: ${m.error.message}`));
          else p.resolve(m.result);
        } else {
          for (const l of this.listeners) l(m);
        }
      }
    });
    inp.on('close', () => {
      for (const p of this.pending.values()) p.reject(new Error(`${p.method}: browser pipe closed`));
    });
  }
  send(method, params = {}, sessionId) {
    const id = this.nextID++;
    return new Promise((resolve, reject) => {
      this.pending.set(id, { method, resolve, reject });
      this.out.write(JSON.stringify({ id, method, params, sessionId }) + '\0');
    });
  }
  // waitFor resolves with the params of the first event named method on
  // sessionId for which pred holds.
  waitFor(method, sessionId, pred = () => true, ms = 20000) {
    return new Promise((resolve, reject) => {
      const l = (m) => {
        if (m.method === method && m.sessionId === sessionId && pred(m.params)) {
          done();
          resolve(m.params);
        }
      };
      const t = setTimeout(() => { done(); reject(new Error(`no ${method} in ${ms} ms`)); }, ms);
      const done = () => { clearTimeout(t); this.listeners.delete(l); };
      this.listeners.add(l);
    });
  }
}

function launch() {
  profile = fs.mkdtempSync(path.join(os.tmpdir(), 'sessiongate-chromium-'));
  const args = [
    '--headless',
    '--remote-debugging-pipe',
    `--user-data-dir=${profile}`,
    '--host-resolver-rules=MAP *.test 127.0.0.1',
    '--no-proxy-server',
    '--no-first-run',
    '--no-default-browser-check',
    '--disable-gpu',
    '--disable-extensions',
    '--disable-background-networking',
    '--disable-component-update',
    '--disable-sync',
    // Background tabs keep their timers and network at full speed: every
    // tab here is in the background but one.
    '--disable-background-timer-throttling',
    '--disable-backgrounding-occluded-windows',
    '--disable-renderer-backgrounding',
    'about:blank',
  ];
  // Chromium's sandbox refuses to run as root.
  if (process.getuid && process.getuid() === 0) args.unshift('--no-sandbox');
  browser = spawn(chromium, args, { stdio: ['ignore', 'ignore', 'pipe', 'pipe', 'pipe'], detached: true });
  let stderr = '';
  browser.stderr.on('data', (d) => { stderr = (stderr + d).slice(-4000); });
  browser.on('exit', (code, sig) => {
    if (!closing) log(`chromium exited (${code} ${sig}); its stderr:\n${stderr}`);
  });
  return new CDP(browser.stdio[3], browser.stdio[4]);
}

// A tab: a page target attached on a flat session, with its console
// and errors logged.
async function openTab(cdp, name) {
  const { targetId } = await cdp.send('Target.createTarget', { url: 'about:blank' });
  const { sessionId } = await cdp.send('Target.attachToTarget', { targetId, flatten: true });
  cdp.listeners.add((m) => {
    if (m.sessionId !== sessionId) return;
    if (m.method === 'Runtime.consoleAPICalled') {
      log(`${name}:`, m.params.args.map((a) => (a.value !== undefined ? a.value : a.description)).join(' '));
    } else if (m.method === 'Runtime.exceptionThrown') {
      log(`${name}: exception:`, m.params.exceptionDetails.exception
        ? m.params.exceptionDetails.exception.description : m.params.exceptionDetails.text);
    }
  });
  await cdp.send('Runtime.enable', {}, sessionId);
  await cdp.send('Page.enable', {}, sessionId);
  await cdp.send('Network.enable', {}, sessionId);
  return { targetId, sessionId };
}

// navigate loads url in tab and resolves with the document's HTTP status.
async function navigate(cdp, tab, url) {
  const response = cdp.waitFor('Network.responseReceived', tab.sessionId, (p) => p.type === 'Document');
  const loaded = cdp.waitFor('Page.loadEventFired', tab.sessionId);
  const nav = await cdp.send('Page.navigate', { url }, tab.sessionId);
  if (nav.errorText) throw new Error(`navigate ${url}: ${nav.errorText}`);
  const r = await response;
  await loaded;
  return r.response.status;
}

async function evaluate(cdp, tab, expression) {
  const r = await cdp.send('Runtime.evaluate', { expression, awaitPromise: true, returnByValue: true }, tab.sessionId);
  if (r.exceptionDetails) {
    throw new Error(`${expression}: ${r.exceptionDetails.exception ? r.exceptionDetails.exception.description : r.exceptionDetails.text}`);
  }
  return r.result.value;
}

const origin = (name) => `http://${name}.test:${port}`;
const creds = () => `user=${encodeURIComponent(user)}&token=${encodeURIComponent(token)}&session=${encodeURIComponent(session)}`;

async function runTransport(cdp, transport) {
  const tab = await openTab(cdp, transport);
  const status = await navigate(cdp, tab, `${origin(transport)}/browser/index.html?mode=sockjs&transport=${transport}&idle=${idle}&${creds()}`);
  if (status !== 200) throw new Error(`page load: ${status}`);
  return evaluate(cdp, tab, 'window.result');
}

async function runREST(cdp) {
  const tab = await openTab(cdp, 'rest');
  const out = {};
  // A REST answer loaded as a page: what a user who opens an API URL sees.
  out.pageStatus = await navigate(cdp, tab, `${origin('rest')}/api/info`);
  out.pageText = await evaluate(cdp, tab, 'document.body.innerText');
  out.pageContentType = await evaluate(cdp, tab, 'document.contentType');
  const status = await navigate(cdp, tab, `${origin('rest')}/browser/index.html?mode=rest&${creds()}`);
  if (status !== 200) throw new Error(`page load: ${status}`);
  return Object.assign(out, await evaluate(cdp, tab, 'window.result'));
}

function upstreamStream(id) {
  return new Promise((resolve, reject) => {
    http.get(`${upstream}/test/stream?id=${encodeURIComponent(id)}`, (res) => {
      let b = '';
      res.on('data', (c) => { b += c; });
      res.on('end', () => resolve(JSON.parse(b)));
    }).on('error', reject);
  });
}

async function runDrop(cdp) {
  const id = `drop${Date.now()}${Math.floor(Math.random() * 1e6)}`;
  const tab = await openTab(cdp, 'drop');
  const status = await navigate(cdp, tab, `${origin('drop')}/browser/index.html?mode=drop&id=${id}`);
  if (status !== 200) throw new Error(`page load: ${status}`);
  if ((await evaluate(cdp, tab, 'window.ready')) !== id) {
    throw new Error(`stream not up: ${JSON.stringify(await evaluate(cdp, tab, 'window.result'))}`);
  }
  const before = await upstreamStream(id);
  if (!before.known || before.closed) throw new Error(`upstream stream before the tab closed: ${JSON.stringify(before)}`);
  const closedAt = Date.now();
  await cdp.send('Target.closeTarget', { targetId: tab.targetId });
  log('drop: tab closed mid-stream');
  for (;;) {
    const s = await upstreamStream(id);
    if (s.closed) return { ok: true, upstreamClosedAfterMs: s.closed - closedAt };
    if (Date.now() - closedAt > 20000) return { ok: true, upstreamClosedAfterMs: -1 };
    await sleep(50);
  }
}

async function main() {
  const cdp = launch();
  const v = await cdp.send('Browser.getVersion');
  report.browser = v.product;
  log(`${v.product} up`);
  // Each check reports its own failure; one does not stop the others.
  const settle = (name, p) => p.then(
    (r) => { report.pages[name] = r; },
    (e) => { report.pages[name] = { ok: false, error: String(e && e.stack ? e.stack : e) }; },
  ).then(() => log(`${name} done`));
  await Promise.all([
    ...transports.map((t) => settle(t, runTransport(cdp, t))),
    settle('rest', runREST(cdp)),
    settle('drop', runDrop(cdp)),
  ]);
  closing = true;
  await cdp.send('Browser.close').catch(() => {});
  await new Promise((r) => (browser.exitCode !== null || browser.signalCode !== null ? r() : browser.once('exit', r)));
}

if (!chromium || !idle) finish(new Error('usage: node browser.js <chromium> <gate-port> <upstream-url> <user> <token> <session> <idle-ms>'));
else main().then(() => finish(null), finish);
