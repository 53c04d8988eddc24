// End-to-end test of the page in headless Chromium (Debian's /usr/bin/chromium, driven by
// playwright-core; no browser download). Serves embedded/web on 127.0.0.1, opens the
// page, gives it the trust root and every pack vector of test-vectors/packs/index.json
// through the file inputs (and one by a simulated drop), and checks the verdict the page
// shows against the vector's expectation. Saves screenshots/{valid,tampered}.png.
//
//   node tests/e2e.mjs            (from embedded/web; CHROMIUM=/path overrides the browser)
//
// Prints a table and one "RESULT ID VERDICT" line per vector; exits 1 on any mismatch,
// on any request to another origin, or on a console error.
import fs from 'node:fs';
import os from 'node:os';
import path from 'node:path';
import { fileURLToPath } from 'node:url';
import { chromium } from 'playwright-core';
import { start } from '../serve.mjs';

const WEB = path.resolve(path.dirname(fileURLToPath(import.meta.url)), '..');
const REPO = path.resolve(WEB, '../..');
const PACKS = path.join(REPO, 'test-vectors/packs');
const TRUST_ROOT = path.join(REPO, 'test-vectors/keys/trust-root.json');
const SHOTS = path.join(WEB, 'screenshots');

const index = JSON.parse(fs.readFileSync(path.join(PACKS, 'index.json'), 'utf8'));
const trust = JSON.parse(fs.readFileSync(TRUST_ROOT, 'utf8'));
const trustKeys = trust.anchors.map((a) => a.key.replace(/^ed25519:/, '')).sort().join(',');

const tmp = fs.mkdtempSync(path.join(os.tmpdir(), 'helm-web-e2e-'));
const server = await start(0);
const base = `http://127.0.0.1:${server.address().port}`;
let failures = 0;
const foreign = [];
const consoleErrors = [];

const context = await chromium.launchPersistentContext(path.join(tmp, 'profile'), {
  executablePath: process.env.CHROMIUM || '/usr/bin/chromium',
  headless: true,
  viewport: { width: 1000, height: 1000 },
  args: [
    '--headless', '--no-sandbox', '--disable-gpu', '--disable-quic', '--no-first-run',
    '--disable-background-networking', '--disable-component-update', '--disable-sync',
  ],
});

try {
  context.on('request', (r) => {
    const u = r.url();
    if (!u.startsWith(base + '/') && !u.startsWith('blob:') && !u.startsWith('data:')) foreign.push(u);
  });
  const page = context.pages()[0] || (await context.newPage());
  page.on('console', (m) => { if (m.type() === 'error') consoleErrors.push(m.text()); });
  page.on('pageerror', (e) => consoleErrors.push(String(e)));
  await page.goto(`${base}/index.html`);

  let run = 0;
  // Waits for the page to finish verification number `n`, and reads its verdict.
  const outcome = async (n) => {
    await page.waitForSelector(`#report[data-run="${n}"]`, { timeout: 60_000 });
    return page.$eval('#report', (r) => ({ ...r.dataset }));
  };
  const verdictText = (o) => (o.verified === 'true' ? `verified:${o.records}` : `${o.code}@${o.index}`);

  // The trust root first (a pack alone waits for it).
  await page.setInputFiles('#trust-input', TRUST_ROOT);

  console.log(`${'vector'.padEnd(36)} ${'expected'.padEnd(28)} ${'browser'.padEnd(28)}`);
  for (const v of index.packs) {
    const expected = v.expect.result === 'accept' ? `accept:${v.expect.records}` : v.expect.error;
    const anchors = [...v.anchors].sort().join(',');
    if (anchors !== trustKeys) {
      // Another trust root for this vector.
      const file = path.join(tmp, `trust-${run}.json`);
      fs.writeFileSync(file, JSON.stringify({ format: 'helm-trust-root/1',
        anchors: v.anchors.map((k, i) => ({ name: `anchor-${i}`, key: `ed25519:${k}` })) }));
      run += 1; // a new trust root with a pack already chosen verifies again
      await page.setInputFiles('#trust-input', file);
      await outcome(run);
    }
    run += 1;
    await page.setInputFiles('#pack-input', path.join(PACKS, v.file));
    const o = await outcome(run);
    const got = verdictText(o);
    const ok = v.expect.result === 'accept' ? got === `verified:${v.expect.records}` : o.code === v.expect.error;
    if (!ok) failures += 1;
    console.log(`${v.id.padEnd(36)} ${expected.padEnd(28)} ${got.padEnd(28)} ${ok ? 'ok' : 'MISMATCH'}`);
    console.log(`RESULT ${v.id} ${got}`);
    if (v.id === 'valid/small-run') await page.screenshot({ path: path.join(SHOTS, 'valid.png'), fullPage: true });
    if (v.id === 'invalid/record-byte-flipped') {
      await page.screenshot({ path: path.join(SHOTS, 'tampered.png'), fullPage: true });
    }
    if (anchors !== trustKeys) {
      run += 1;
      await page.setInputFiles('#trust-input', TRUST_ROOT);
      await outcome(run);
    }
  }

  // Drag and drop: both files at once, as a person would drop them.
  const dropped = ['valid/small-run.tar.gz', TRUST_ROOT].map((f) => {
    const p = path.isAbsolute(f) ? f : path.join(PACKS, f);
    return { name: path.basename(p), bytes: [...fs.readFileSync(p)] };
  });
  const dataTransfer = await page.evaluateHandle((files) => {
    const dt = new DataTransfer();
    for (const f of files) dt.items.add(new File([new Uint8Array(f.bytes)], f.name));
    return dt;
  }, dropped);
  run += 1; // the trust root re-verifies the current pack...
  run += 1; // ...then the dropped pack is verified
  await page.dispatchEvent('#drop', 'drop', { dataTransfer });
  const d = await outcome(run);
  const dropOk = d.verified === 'true' && d.records === '28';
  if (!dropOk) failures += 1;
  console.log(`${'drop: small-run.tar.gz + trust root'.padEnd(36)} ${'accept:28'.padEnd(28)} ${verdictText(d).padEnd(28)} ${dropOk ? 'ok' : 'MISMATCH'}`);
} finally {
  await context.close();
  server.close();
  fs.rmSync(tmp, { recursive: true, force: true });
}

if (foreign.length) {
  failures += 1;
  console.log(`MISMATCH: requests left 127.0.0.1: ${foreign.join(' ')}`);
}
if (consoleErrors.length) {
  failures += 1;
  console.log(`MISMATCH: console errors: ${consoleErrors.join(' | ')}`);
}
console.log(`browser: ${index.packs.length} vectors + 1 drop, ${failures} failures, no request left 127.0.0.1: ${foreign.length === 0}`);
process.exit(failures ? 1 : 0);
