'use strict';
// Change-stream fan-out latency: `node fanout.js SUBSCRIBERS EVENTS STREAM_URL CREATE_URL TOKEN`.
// Opens SUBSCRIBERS server-sent-event streams, then creates EVENTS posts one after another
// and measures, for every delivery, the time from the create's acknowledgement (its
// response, i.e. after the commit) to the event's arrival. Prints one JSON object.
const http = require('http');

const [subs, events, streamUrl, createUrl, token] = process.argv.slice(2);
const SUBS = +subs;
const EVENTS = +events;
const acked = new Map(); // text -> ms when the create was acknowledged
const early = new Map(); // text -> arrivals before the acknowledgement
const latencies = [];
let connected = 0;

function now() {
  return Number(process.hrtime.bigint()) / 1e6;
}

function subscribe() {
  return new Promise((resolve, reject) => {
    const req = http.get(streamUrl, {agent: false, headers: {Accept: 'text/event-stream'}}, (res) => {
      if (res.statusCode !== 200) return reject(new Error(`stream status ${res.statusCode}`));
      connected++;
      resolve();
      let buf = '';
      res.setEncoding('utf8');
      res.on('data', (chunk) => {
        buf += chunk;
        let i;
        while ((i = buf.indexOf('\n\n')) >= 0) {
          const frame = buf.slice(0, i);
          buf = buf.slice(i + 2);
          const line = frame.split('\n').find((l) => l.startsWith('data:'));
          if (!line) continue;
          let ev;
          try { ev = JSON.parse(line.slice(5)); } catch (e) { continue; }
          if (ev.type !== 'create' || !ev.data || typeof ev.data.text !== 'string') continue;
          const t = now();
          const at = acked.get(ev.data.text);
          if (at === undefined) early.set(ev.data.text, (early.get(ev.data.text) || 0) + 1);
          else latencies.push(Math.max(0, t - at));
        }
      });
    });
    req.on('error', reject);
  });
}

function create(text) {
  return new Promise((resolve, reject) => {
    const body = JSON.stringify({text});
    const u = new URL(createUrl);
    const req = http.request({hostname: u.hostname, port: u.port, path: u.pathname, method: 'POST', agent: false,
      headers: {'Content-Type': 'application/json', 'Content-Length': Buffer.byteLength(body), Authorization: token}},
    (res) => {
      res.resume();
      res.on('end', () => (res.statusCode === 200 ? resolve() : reject(new Error(`create status ${res.statusCode}`))));
    });
    req.on('error', reject);
    req.end(body);
  });
}

function pct(sorted, p) {
  if (!sorted.length) return null;
  return sorted[Math.min(sorted.length - 1, Math.floor((p / 100) * sorted.length))];
}

(async () => {
  for (let i = 0; i < SUBS; i += 100) {
    await Promise.all(Array.from({length: Math.min(100, SUBS - i)}, subscribe));
  }
  for (let n = 0; n < EVENTS; n++) {
    const text = `fanout ${n} ${Date.now()}`;
    await create(text);
    const t = now();
    acked.set(text, t);
    // Arrivals before the acknowledgement count as zero latency.
    for (let k = 0; k < (early.get(text) || 0); k++) latencies.push(0);
    await new Promise((r) => setTimeout(r, 100));
  }
  await new Promise((r) => setTimeout(r, 3000));
  latencies.sort((a, b) => a - b);
  const expected = SUBS * EVENTS;
  const out = {subscribers: connected, events: EVENTS, delivered: latencies.length, expected,
    p50_ms: +(pct(latencies, 50) || 0).toFixed(2), p99_ms: +(pct(latencies, 99) || 0).toFixed(2),
    max_ms: +(latencies[latencies.length - 1] || 0).toFixed(2)};
  console.log(JSON.stringify(out));
  process.exit(latencies.length === expected ? 0 : 1);
})().catch((e) => { console.error(e.message); process.exit(1); });
