'use strict';
// JSON helpers for bench/run (Node is needed for the LoopBack 3 peer anyway).
//
//   node lib.js seed N OUT.json          the Portcullis seed file: 2 users, N posts
//   node lib.js get KEY < JSON           print one top-level field of a JSON document
//   node lib.js wrk FILE                 print the WRKJSON object of a wrk output file
//   node lib.js check RUN.json           exit 1 (with the reason) if the run had errors
//   node lib.js report RUNDIR META.json OUT.json   results.json + the stdout summary
const fs = require('fs');
const path = require('path');

const [cmd, ...args] = process.argv.slice(2);

function fail(msg) {
  console.error(`bench: FAIL: ${msg}`);
  process.exit(1);
}

function readJson(file) {
  return JSON.parse(fs.readFileSync(file, 'utf8'));
}

// Same data as the LoopBack 3 peer's seed(): alice and bob, posts alternating owners
// (alice first), one minute apart from 2020-01-01T00:00:00Z. Ids are explicit (users 1
// and 2, post i has id i+1) so `portcullis seed` stays idempotent.
function seed(n, out) {
  const t0 = Date.UTC(2020, 0, 1);
  const data = {
    appuser: [
      {id: 1, email: 'alice@example.com', password: 'alice-pass', username: 'alice'},
      {id: 2, email: 'bob@example.com', password: 'bob-pass', username: 'bob'},
    ],
    Post: [],
  };
  for (let i = 0; i < n; i++) {
    data.Post.push({
      id: i + 1,
      created: new Date(t0 + i * 60000).toISOString(),
      text: `post number ${i} lorem ipsum dolor sit amet`,
      ownerId: i % 2 === 0 ? 1 : 2,
    });
  }
  fs.writeFileSync(out, JSON.stringify(data));
}

function wrkResult(file) {
  const text = fs.readFileSync(file, 'utf8');
  const line = text.split('\n').find((l) => l.startsWith('WRKJSON '));
  if (!line) fail(`${file}: wrk printed no result line:\n${text}`);
  return JSON.parse(line.slice('WRKJSON '.length));
}

// A run is good when it made requests, every status was the expected one, and no
// connection failed or timed out.
function problems(run) {
  const w = run.wrk;
  const out = [];
  if (!w || !(w.requests > 0)) out.push('no requests completed');
  else {
    if (w.bad_status > 0) {
      out.push(`${w.bad_status} response(s) with a status other than ${w.expect}` +
        (Object.keys(w.statuses).length ? ` (statuses: ${JSON.stringify(w.statuses)})` : ''));
    }
    const e = w.errors;
    const sock = e.connect + e.read + e.write + e.timeout;
    if (sock > 0) out.push(`socket errors: ${JSON.stringify(e)}`);
  }
  return out;
}

const SERVER_LABEL = {
  'portcullis': 'Portcullis',
  'lb3-memory': 'LB3 memory',
  'lb3-pg': 'LB3 pg',
  'ceiling': 'axum ceiling',
};

const ORDER = ['portcullis', 'lb3-memory', 'lb3-pg', 'ceiling'];

function ratio(a, b) {
  return a > 0 && b > 0 ? +(a / b).toFixed(3) : null;
}

function pad(s, n) {
  s = String(s);
  return s.length >= n ? s : s + ' '.repeat(n - s.length);
}
function lpad(s, n) {
  s = String(s);
  return s.length >= n ? s : ' '.repeat(n - s.length) + s;
}

function report(runDir, metaFile, outFile) {
  const meta = readJson(metaFile);
  const runs = fs.readdirSync(runDir).filter((f) => f.endsWith('.json'))
    .map((f) => readJson(path.join(runDir, f)));
  for (const run of runs) {
    const p = problems(run);
    if (p.length) fail(`${run.scenario} on ${run.server}: ${p.join('; ')}`);
  }
  const byScenario = {};
  for (const s of meta.scenarios) byScenario[s.id] = {...s, servers: {}};
  const storm = {};
  const peak = {};
  for (const run of runs) {
    const w = run.wrk;
    const entry = {
      rps: +w.rps.toFixed(1),
      p50_ms: w.latency_ms.p50,
      p90_ms: w.latency_ms.p90,
      p99_ms: w.latency_ms.p99,
      max_ms: w.latency_ms.max,
      requests: w.requests,
      duration_s: w.duration_s,
      statuses: w.statuses,
      rss_after_kb: run.rss_kb,
      hwm_after_kb: run.hwm_kb,
    };
    if (run.hwm_kb) peak[run.server] = Math.max(peak[run.server] || 0, run.hwm_kb);
    if (run.scenario.startsWith('storm-')) {
      const s = (storm[run.server] = storm[run.server] || {});
      s[run.scenario.slice('storm-'.length)] = entry;
    } else {
      byScenario[run.scenario].servers[run.server] = entry;
    }
  }
  for (const s of Object.values(byScenario)) {
    const p = s.servers.portcullis;
    s.ratios = {};
    if (!p) continue;
    for (const [other, key] of [['lb3-memory', 'vs_lb3_memory'], ['lb3-pg', 'vs_lb3_pg'],
      ['ceiling', 'vs_ceiling']]) {
      const o = s.servers[other];
      if (!o) continue;
      // rps: Portcullis / other (above 1: Portcullis serves more).
      // p99: Portcullis / other (below 1: Portcullis answers faster).
      s.ratios[key] = {rps: ratio(p.rps, o.rps), p99: ratio(p.p99_ms, o.p99_ms)};
    }
  }
  for (const s of Object.values(storm)) {
    if (s.reads_alone && s.reads_during_logins) {
      s.p99_ratio_during_vs_alone = ratio(s.reads_during_logins.p99_ms, s.reads_alone.p99_ms);
      s.rps_ratio_during_vs_alone = ratio(s.reads_during_logins.rps, s.reads_alone.rps);
    }
    if (s.logins) s.logins_per_s = s.logins.rps;
  }
  const results = {
    provisional: meta.provisional,
    command: meta.command,
    date: meta.date,
    machine: meta.machine,
    settings: meta.settings,
    scenarios: byScenario,
    login_storm: storm,
    peak_rss_kb: peak,
  };
  fs.writeFileSync(outFile, JSON.stringify(results, null, 2) + '\n');

  // Human summary.
  const lines = [];
  lines.push(`Portcullis benchmark — ${meta.date}${meta.provisional ? ' (PROVISIONAL)' : ''}`);
  lines.push(`${meta.machine.cpu}, ${meta.machine.nproc} cores, ${meta.machine.memory}; ` +
    `${meta.settings.connections} connections, ${meta.settings.duration_s} s per run`);
  lines.push('');
  lines.push(pad('scenario', 20) + pad('server', 14) + lpad('req/s', 10) + lpad('p50 ms', 10) +
    lpad('p99 ms', 10) + '   Portcullis rps ratio');
  for (const s of Object.values(byScenario)) {
    for (const name of ORDER.filter((n) => s.servers[n])) {
      const e = s.servers[name];
      let r = '';
      if (name !== 'portcullis') {
        const key = {'lb3-memory': 'vs_lb3_memory', 'lb3-pg': 'vs_lb3_pg', 'ceiling': 'vs_ceiling'}[name];
        const v = s.ratios[key] && s.ratios[key].rps;
        r = v == null ? '' : `   x${v.toFixed(2)}`;
      }
      lines.push(pad(s.id, 20) + pad(SERVER_LABEL[name] || name, 14) + lpad(e.rps.toFixed(0), 10) +
        lpad(e.p50_ms.toFixed(2), 10) + lpad(e.p99_ms.toFixed(2), 10) + r);
    }
  }
  lines.push('');
  lines.push('login storm: reads (GET /api/posts?filter[limit]=20, ' +
    `${meta.settings.connections} conns) alone vs during logins (${meta.settings.storm_connections} conns)`);
  lines.push(pad('server', 14) + lpad('logins/s', 10) + lpad('p99 alone', 12) +
    lpad('p99 storm', 12) + lpad('ratio', 8) + lpad('rps alone', 11) + lpad('rps storm', 11));
  for (const name of ORDER.filter((n) => storm[n])) {
    const s = storm[name];
    lines.push(pad(SERVER_LABEL[name] || name, 14) + lpad(s.logins.rps.toFixed(1), 10) +
      lpad(s.reads_alone.p99_ms.toFixed(2), 12) + lpad(s.reads_during_logins.p99_ms.toFixed(2), 12) +
      lpad(s.p99_ratio_during_vs_alone.toFixed(2), 8) + lpad(s.reads_alone.rps.toFixed(0), 11) +
      lpad(s.reads_during_logins.rps.toFixed(0), 11));
  }
  lines.push('');
  lines.push('peak RSS (VmHWM): ' + ORDER.filter((n) => peak[n]).map((n) => [n, peak[n]])
    .map(([n, kb]) => `${SERVER_LABEL[n] || n} ${(kb / 1024).toFixed(1)} MiB`).join(', '));
  lines.push(`written: ${outFile}`);
  console.log(lines.join('\n'));
}

switch (cmd) {
  case 'seed':
    seed(+args[0], args[1]);
    break;
  case 'get': {
    const v = JSON.parse(fs.readFileSync(0, 'utf8'))[args[0]];
    if (v === undefined) fail(`no field ${args[0]}`);
    process.stdout.write(String(v));
    break;
  }
  case 'wrk':
    process.stdout.write(JSON.stringify(wrkResult(args[0])));
    break;
  case 'check': {
    const run = readJson(args[0]);
    const p = problems(run);
    if (p.length) fail(`${run.scenario} on ${run.server}: ${p.join('; ')}`);
    break;
  }
  case 'report':
    report(args[0], args[1], args[2]);
    break;
  default:
    fail(`unknown command ${cmd}`);
}
