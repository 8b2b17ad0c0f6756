// Browser test of the wall example client (examples/wall/client) served by Portcullis.
//
// Starts its own server on a copy of examples/wall (fresh SQLite file), drives Debian's
// chromium through playwright-core with two browser contexts (two users), and saves
// screenshots into <repo>/test-artifacts/.
//
//   node --test tests/browser/
//
// Environment: PORTCULLIS_BIN (default <repo>/target/debug/portcullis),
//              CHROMIUM (default /usr/bin/chromium).

import { describe, it, before, after } from 'node:test';
import assert from 'node:assert/strict';
import { spawn } from 'node:child_process';
import fs from 'node:fs';
import net from 'node:net';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';

const here = path.dirname(fileURLToPath(import.meta.url));
const repo = path.resolve(here, '..', '..');
const bin =
  process.env.PORTCULLIS_BIN ||
  path.join(process.env.CARGO_TARGET_DIR || path.join(repo, 'target'), 'debug', 'portcullis');
const chromiumPath = process.env.CHROMIUM || '/usr/bin/chromium';
const artifacts = path.join(repo, 'test-artifacts');
const TZ = 'Asia/Kolkata'; // +05:30: a non-UTC, non-whole-hour zone to check local-time formatting

const A = { email: 'alice@example.com', password: 'alice-secret' };
const B = { email: 'bob@example.com', password: 'bob-secret' };
const A_TEXT = 'Hello wall, this is Alice.';
const XSS_TEXT = '<img src=x onerror=window.__xss=1>';

let tmpDir;
let server;
let serverLog = '';
let base;
let browser;
let ctxA, ctxB, pageA, pageB;
const pageErrors = [];

function freePort() {
  return new Promise((resolve, reject) => {
    const srv = net.createServer();
    srv.unref();
    srv.on('error', reject);
    srv.listen(0, '127.0.0.1', () => {
      const { port } = srv.address();
      srv.close(() => resolve(port));
    });
  });
}

const sleep = (ms) => new Promise((r) => setTimeout(r, ms));

async function waitForServer(url, timeoutMs) {
  const deadline = Date.now() + timeoutMs;
  let lastErr;
  while (Date.now() < deadline) {
    if (server.exitCode !== null || server.signalCode !== null) {
      throw new Error(`portcullis exited early (${server.exitCode ?? server.signalCode}):\n${serverLog}`);
    }
    try {
      const res = await fetch(url);
      if (res.ok) return;
      lastErr = new Error(`HTTP ${res.status}`);
    } catch (e) {
      lastErr = e;
    }
    await sleep(200);
  }
  throw new Error(`server did not answer ${url}: ${lastErr}\n${serverLog}`);
}

async function shot(page, name) {
  await page.screenshot({ path: path.join(artifacts, name), fullPage: true });
}

function watch(page, label) {
  page.on('pageerror', (err) => pageErrors.push(`${label}: ${err.message}`));
}

// The card (article) whose text is exactly `text`.
function card(page, text) {
  return page.locator('article.post').filter({
    has: page.locator('.post-text').getByText(text, { exact: true }),
  });
}

async function register(page, user) {
  await page.click('#open-auth');
  await page.locator('#auth-dialog').waitFor({ state: 'visible' });
  await page.fill('#register-email', user.email);
  await page.fill('#register-password', user.password);
  await page.fill('#register-confirm', user.password);
  await page.click('#register-form button[type=submit]');
}

async function publish(page, text) {
  await page.fill('#post-text', text);
  await page.click('#publish');
}

// Expected "YYYY-MM-DD at HH:MM" for an ISO instant in the test's time zone, computed with Intl
// (independently of the page's code).
function expectedDate(iso) {
  const parts = Object.fromEntries(
    new Intl.DateTimeFormat('en-US', {
      timeZone: TZ, year: 'numeric', month: '2-digit', day: '2-digit',
      hour: '2-digit', minute: '2-digit', hourCycle: 'h23',
    }).formatToParts(new Date(iso)).map((p) => [p.type, p.value]),
  );
  return `${parts.year}-${parts.month}-${parts.day} at ${parts.hour}:${parts.minute}`;
}

describe('wall client in a browser', { timeout: 180_000 }, () => {
  before(async () => {
    assert.ok(fs.existsSync(bin), `portcullis binary not found at ${bin} (run cargo build -p portcullis)`);
    assert.ok(fs.existsSync(chromiumPath), `chromium not found at ${chromiumPath}`);
    fs.mkdirSync(artifacts, { recursive: true });

    tmpDir = fs.mkdtempSync(path.join(os.tmpdir(), 'portcullis-wall-'));
    fs.cpSync(path.join(repo, 'examples', 'wall'), tmpDir, {
      recursive: true,
      filter: (src) => !/\.sqlite/.test(path.basename(src)),
    });

    const port = await freePort();
    base = `http://127.0.0.1:${port}`;
    server = spawn(bin, ['serve', tmpDir, '--port', String(port), '--host', '127.0.0.1'], {
      cwd: tmpDir,
      stdio: ['ignore', 'pipe', 'pipe'],
    });
    server.stdout.on('data', (d) => { serverLog += d; });
    server.stderr.on('data', (d) => { serverLog += d; });
    await waitForServer(`${base}/api/posts`, 30_000);

    browser = await chromium.launch({
      executablePath: chromiumPath,
      args: [
        '--headless', '--no-sandbox', '--disable-gpu', '--disable-dev-shm-usage',
        '--disable-background-networking', '--disable-component-update', '--disable-sync',
        '--no-first-run',
      ],
    });
    const opts = { viewport: { width: 1100, height: 800 }, timezoneId: TZ, locale: 'en-US' };
    ctxA = await browser.newContext(opts);
    ctxB = await browser.newContext(opts);
    pageA = await ctxA.newPage();
    pageB = await ctxB.newPage();
    pageA.setDefaultTimeout(10_000);
    pageB.setDefaultTimeout(10_000);
    watch(pageA, 'A');
    watch(pageB, 'B');
  });

  after(async () => {
    if (browser) await browser.close().catch(() => {});
    if (server && server.exitCode === null) {
      server.kill('SIGTERM');
      await Promise.race([new Promise((r) => server.once('exit', r)), sleep(5000)]);
      if (server.exitCode === null && server.signalCode === null) server.kill('SIGKILL');
    }
    if (tmpDir) fs.rmSync(tmpDir, { recursive: true, force: true });
  });

  it('serves the page from client/ and shows an empty wall to visitors', async () => {
    const res = await pageA.goto(`${base}/`);
    assert.equal(res.status(), 200);
    assert.match(await pageA.title(), /LB Security Demo/);
    await pageA.locator('#feed-empty').waitFor({ state: 'visible' });
    assert.equal(await pageA.locator('#compose').isVisible(), false, 'no Add Post while logged out');
    assert.equal(await pageA.locator('#logout').isVisible(), false);
    assert.equal(await pageA.locator('#open-auth').isVisible(), true);
    await shot(pageA, '01-empty-wall.png');
  });

  it('checks the register form on the client', async () => {
    await pageA.click('#open-auth');
    await pageA.locator('#auth-dialog').waitFor({ state: 'visible' });
    const err = pageA.locator('#register-error');
    await pageA.click('#register-form button[type=submit]');
    assert.equal(await err.textContent(), 'Email is required.');
    await pageA.fill('#register-email', A.email);
    await pageA.click('#register-form button[type=submit]');
    assert.equal(await err.textContent(), 'Password is required.');
    await pageA.fill('#register-password', A.password);
    await pageA.fill('#register-confirm', 'something else');
    await pageA.click('#register-form button[type=submit]');
    assert.equal(await err.textContent(), "Confirmation password didn't match.");
    await shot(pageA, '02-register-validation.png');
    await pageA.click('#close-auth');
    await pageA.locator('#auth-dialog').waitFor({ state: 'hidden' });
  });

  it('user A registers, is logged in at once, publishes and sees a Delete button', async () => {
    await register(pageA, A);
    await pageA.locator('#logout').waitFor({ state: 'visible' });
    await pageA.locator('#compose').waitFor({ state: 'visible' });
    assert.equal(await pageA.locator('#auth-dialog').isVisible(), false, 'dialog closed');
    assert.equal(await pageA.locator('#open-auth').isVisible(), false);
    assert.match(await pageA.locator('#whoami').textContent(), /alice@example\.com/);
    const session = await pageA.evaluate(() => ({
      token: sessionStorage.getItem('token'), userid: sessionStorage.getItem('userid'),
    }));
    assert.ok(session.token && session.token.length > 10, 'token in sessionStorage');
    assert.ok(session.userid, 'userid in sessionStorage');

    await publish(pageA, A_TEXT);
    const post = card(pageA, A_TEXT);
    await post.waitFor({ state: 'visible' });
    assert.equal(await pageA.inputValue('#post-text'), '', 'textarea cleared');
    await post.getByRole('button', { name: 'Delete' }).waitFor({ state: 'visible' });
    assert.equal(await post.locator('.post-author').textContent(), A.email);

    // the date is "YYYY-MM-DD at HH:MM" in local time (months 1-12, hours not shifted)
    const time = post.locator('time');
    const iso = await time.getAttribute('datetime');
    const shown = await time.textContent();
    assert.match(shown, /^\d{4}-\d{2}-\d{2} at \d{2}:\d{2}$/);
    assert.equal(shown, expectedDate(iso));
    await shot(pageA, '03-a-posted.png');
  });

  it('shows server errors: duplicate email and failed login', async () => {
    await pageB.goto(`${base}/`);
    await register(pageB, { email: A.email, password: 'whatever' });
    const regErr = pageB.locator('#register-error');
    await pageB.waitForFunction(() =>
      document.getElementById('register-error').textContent === 'Sorry, but that email already exists.');
    assert.equal(await regErr.textContent(), 'Sorry, but that email already exists.');
    await shot(pageB, '04-duplicate-email.png');

    await pageB.fill('#login-email', A.email);
    await pageB.fill('#login-password', 'wrong password');
    await pageB.click('#login-form button[type=submit]');
    await pageB.waitForFunction(() =>
      document.getElementById('login-error').textContent === 'Your login did not work.');
    assert.equal(await pageB.locator('#logout').isVisible(), false, 'still logged out');
    await pageB.click('#close-auth');
  });

  it("user B registers and sees A's post without a Delete button", async () => {
    await register(pageB, B);
    await pageB.locator('#logout').waitFor({ state: 'visible' });
    const post = card(pageB, A_TEXT);
    await post.waitFor({ state: 'visible' });
    assert.equal(await post.locator('.post-author').textContent(), A.email);
    assert.equal(await post.locator('button').count(), 0, "no Delete on someone else's post");
    await shot(pageB, '05-b-sees-a-post.png');
  });

  it("refuses B's DELETE of A's post with 401", async () => {
    const id = await card(pageB, A_TEXT).getAttribute('data-id');
    const status = await pageB.evaluate(async (postId) => {
      const res = await fetch(`/api/posts/${postId}`, {
        method: 'DELETE',
        headers: { Authorization: sessionStorage.getItem('token') },
      });
      return res.status;
    }, id);
    assert.equal(status, 401);
    const still = await fetch(`${base}/api/posts/${id}`);
    assert.equal(still.status, 200, 'the post still exists');
  });

  it('renders post text as text, never as HTML (no stored XSS)', async () => {
    await publish(pageB, XSS_TEXT);
    for (const page of [pageB, pageA]) {
      const post = card(page, XSS_TEXT);
      await post.waitFor({ state: 'visible' });
      assert.equal(await post.locator('.post-text').textContent(), XSS_TEXT);
      assert.equal(await page.locator('#feed img').count(), 0, 'no <img> element was created');
    }
    assert.equal(await card(pageB, XSS_TEXT).locator('button.delete').count(), 1, 'B owns it');
    assert.equal(await card(pageA, XSS_TEXT).locator('button').count(), 0, 'A does not');
    await sleep(500); // give a (hypothetical) failing image time to fire onerror
    for (const page of [pageA, pageB]) {
      assert.equal(await page.evaluate(() => typeof window.__xss), 'undefined');
    }
    // newest first
    const texts = await pageA.locator('#feed .post-text').allTextContents();
    assert.deepEqual(texts, [XSS_TEXT, A_TEXT]);
    await shot(pageA, '06-xss-rendered-as-text.png');
  });

  it("A deletes the post and it vanishes from B's page without a reload", async () => {
    await pageB.evaluate(() => { window.__noReload = 'still here'; });
    const postA = card(pageA, A_TEXT);
    await postA.getByRole('button', { name: 'Delete' }).click();
    await postA.waitFor({ state: 'detached', timeout: 5_000 });
    await card(pageB, A_TEXT).waitFor({ state: 'detached', timeout: 10_000 });
    assert.equal(await pageB.evaluate(() => window.__noReload), 'still here', 'B did not reload');
    assert.deepEqual(await pageB.locator('#feed .post-text').allTextContents(), [XSS_TEXT]);
    await shot(pageB, '07-b-after-a-deleted.png');
  });

  it('keeps the session over a reload; logout and login work', async () => {
    await pageB.reload();
    await pageB.locator('#logout').waitFor({ state: 'visible' });
    const own = card(pageB, XSS_TEXT);
    await own.locator('button.delete').waitFor({ state: 'visible' });

    await pageB.click('#logout');
    await pageB.locator('#open-auth').waitFor({ state: 'visible' });
    assert.equal(await pageB.locator('#compose').isVisible(), false);
    assert.equal(await own.locator('button').count(), 0, 'Delete buttons go with the session');
    assert.equal(await pageB.evaluate(() => sessionStorage.getItem('token')), null);

    await pageB.click('#open-auth');
    await pageB.fill('#login-email', B.email);
    await pageB.fill('#login-password', B.password);
    await pageB.click('#login-form button[type=submit]');
    await pageB.locator('#logout').waitFor({ state: 'visible' });
    await own.locator('button.delete').waitFor({ state: 'visible' });
    await shot(pageB, '08-b-logged-in-again.png');
  });

  it('fits a 360px wide screen', async () => {
    await pageA.setViewportSize({ width: 360, height: 740 });
    await card(pageA, XSS_TEXT).waitFor({ state: 'visible' });
    await pageA.locator('#compose').waitFor({ state: 'visible' });
    const width = await pageA.evaluate(() => document.documentElement.scrollWidth);
    assert.ok(width <= 360, `no horizontal scrolling (scrollWidth ${width})`);
    await shot(pageA, '09-mobile-360.png');

    // a new tab has its own sessionStorage: logged out
    const page = await ctxA.newPage();
    watch(page, 'A-mobile');
    await page.setViewportSize({ width: 360, height: 740 });
    await page.goto(`${base}/`);
    await card(page, XSS_TEXT).waitFor({ state: 'visible' });
    assert.equal(await page.locator('#logout').isVisible(), false);
    await page.click('#open-auth');
    await page.locator('#auth-dialog').waitFor({ state: 'visible' });
    const dialogWidth = await page.locator('#auth-dialog').evaluate((d) => d.getBoundingClientRect().width);
    assert.ok(dialogWidth <= 360, `dialog fits (${dialogWidth}px)`);
    await shot(page, '10-mobile-dialog.png');
    await page.close();
  });

  it('had no uncaught errors in the pages', () => {
    assert.deepEqual(pageErrors, []);
  });
});
