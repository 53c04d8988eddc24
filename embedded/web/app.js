// The page: picks up a pack and a trust-root file (dropped or chosen), hands them to the
// verifier in worker.js, and shows its report. Files are read locally; nothing is sent.
'use strict';

const KIND_ORDER = ['INTENT', 'DECISION', 'APPROVAL', 'EFFECT', 'VIOLATION', 'TRUST_EVENT', 'POLICY',
  'ATTESTATION', 'CHECKPOINT'];

const state = { pack: null, anchors: null, anchorNames: [], trustFile: null, run: 0 };
const $ = (id) => document.getElementById(id);
const worker = new Worker('worker.js');

// spec/evidencepack.md §8: {"format": "helm-trust-root/1", "anchors": [{"name", "key"}, ...]},
// no other members, keys "ed25519:" + 64 lowercase hex digits. (The prime-order check of
// each key is the verifier's.)
function parseTrustRoot(text) {
  let doc;
  try {
    doc = JSON.parse(text);
  } catch (e) {
    throw new Error('not JSON: ' + e.message);
  }
  const only = (obj, keys, what) => {
    if (obj === null || typeof obj !== 'object' || Array.isArray(obj)) throw new Error(what + ' is not an object');
    for (const k of Object.keys(obj)) if (!keys.includes(k)) throw new Error(`unknown member "${k}" in ${what}`);
    for (const k of keys) if (!(k in obj)) throw new Error(`${what} has no "${k}"`);
  };
  only(doc, ['format', 'anchors'], 'the trust root');
  if (doc.format !== 'helm-trust-root/1') throw new Error('format is not "helm-trust-root/1"');
  if (!Array.isArray(doc.anchors) || doc.anchors.length === 0) throw new Error('"anchors" is not a non-empty list');
  const bytes = new Uint8Array(32 * doc.anchors.length);
  const names = [];
  doc.anchors.forEach((a, i) => {
    only(a, ['name', 'key'], `anchor ${i}`);
    if (typeof a.name !== 'string') throw new Error(`anchor ${i}: name is not a string`);
    const m = typeof a.key === 'string' && /^ed25519:([0-9a-f]{64})$/.exec(a.key);
    if (!m) throw new Error(`anchor ${i}: key is not "ed25519:" and 64 lowercase hex digits`);
    for (let j = 0; j < 32; j++) bytes[32 * i + j] = parseInt(m[1].slice(2 * j, 2 * j + 2), 16);
    names.push(a.name);
  });
  return { bytes, names };
}

function text(tag, content, cls) {
  const el = document.createElement(tag);
  el.textContent = content;
  if (cls) el.className = cls;
  return el;
}

function table(rows) {
  const t = document.createElement('table');
  for (const [k, v] of rows) {
    const tr = t.insertRow();
    tr.appendChild(text('th', k));
    const td = tr.insertCell();
    if (v instanceof Node) td.appendChild(v);
    else td.textContent = String(v);
  }
  return t;
}

function mono(s) {
  return text('span', s, 'mono');
}

function bytes(n) {
  return n < 1024 ? `${n} bytes` : `${(n / 1024).toFixed(1)} KiB (${n.toLocaleString('en')} bytes)`;
}

function setVerdict(cls, title, why) {
  const v = $('verdict');
  v.className = 'verdict ' + cls;
  v.textContent = title;
  if (why) v.appendChild(text('span', why, 'why'));
}

function render(run, report, ms) {
  const r = $('report');
  const details = $('details');
  details.replaceChildren();
  const common = [
    ['Pack file', `${state.pack.name}, ${bytes(state.pack.size)}`],
    ['Trust anchors', `${state.anchorNames.join(', ')} — from ${state.trustFile}`],
  ];
  if (report.verified) {
    setVerdict('verified', `✔ Verified: ${report.records} records`,
      'Every signature, chain, sequence, trust and pack rule holds, and the manifest is signed by an active kernel key.');
    const kinds = document.createElement('div');
    kinds.className = 'kinds';
    for (const k of KIND_ORDER) {
      kinds.appendChild(text('span', k));
      kinds.appendChild(text('span', String(report.per_kind[k])));
    }
    const time = (ms) => new Date(ms).toISOString();
    details.appendChild(table([
      ...common,
      ['Transport', report.wrapper === 'none' ? 'plain tar' : report.wrapper],
      ['Uncompressed size', bytes(report.pack_bytes)],
      ['Records per kind', kinds],
      ['(signer, session) streams', report.streams],
      ['Escalations (open at the end)', `${report.escalations} (${report.open_escalations})`],
      ['Checkpoints (witnessed)', `${report.checkpoints} (${report.witnessed_checkpoints})`],
      ['Keys published (retired)', `${report.keys_published} (${report.keys_retired})`],
      ['Blobs present, withheld', `${report.blobs}, ${report.withheld}`],
      ['Kernel time', `${time(report.time_first_ms)} … ${time(report.time_last_ms)}`],
      ['Records root', mono(report.records_root)],
      ['Head', mono(report.head)],
      ['Producer', mono(report.producer)],
      ['Verified in', `${ms.toFixed(0)} ms`],
    ]));
  } else {
    const e = report.error;
    const where = e.record_index === null || e.record_index === undefined ? '' : ` at record ${e.record_index}`;
    setVerdict('failed', `✘ Not verified: ${e.code}${e.number ? ' (' + e.number + ')' : ''}${where}`, e.detail);
    const rows = [...common, ['Error', `${e.code}${e.number ? ' (' + e.number + ')' : ''}`], ['Detail', e.detail]];
    if (e.record_index !== null && e.record_index !== undefined) rows.push(['Record index', e.record_index]);
    if (e.pack_code) rows.push(['Pack-level code', `${e.pack_code} (${e.pack_number})`]);
    if (e.entry) rows.push(['Tar entry', `${e.entry} (entry ${e.entry_index})`]);
    if (e.offset !== undefined) rows.push(['Byte offset', e.offset]);
    if (e.transport) rows.push(['Decompressor', e.transport]);
    details.appendChild(table(rows));
  }
  // For tests and scripts: the outcome as attributes.
  r.dataset.verified = String(report.verified);
  r.dataset.code = report.verified ? 'OK' : report.error.code;
  r.dataset.index = report.verified || report.error.record_index == null ? '-' : String(report.error.record_index);
  r.dataset.records = report.verified ? String(report.records) : '';
  r.dataset.run = String(run);
}

function maybeVerify() {
  if (!state.pack || !state.anchors) {
    setVerdict('idle', state.pack ? 'Now choose a trust-root file.' : 'Now choose a pack.');
    return;
  }
  state.run += 1;
  $('details').replaceChildren();
  setVerdict('busy', `Verifying ${state.pack.name}…`);
  worker.postMessage({ run: state.run, file: state.pack, anchors: state.anchors });
}

worker.onmessage = (ev) => {
  const m = ev.data;
  if (m.type === 'progress') {
    if (m.run === state.run) setVerdict('busy', `Verifying ${state.pack.name}… ${bytes(m.bytes)} so far`);
  } else if (m.type === 'done') {
    if (m.run === state.run) render(m.run, m.report, m.ms);
  }
};
worker.onerror = (ev) => setVerdict('failed', '✘ The verifier could not start', ev.message);

async function takeTrustRoot(file) {
  try {
    const t = parseTrustRoot(await file.text());
    state.anchors = t.bytes;
    state.anchorNames = t.names;
    state.trustFile = file.name;
    $('trust-name').textContent = `${t.names.join(', ')} (${file.name})`;
    maybeVerify();
  } catch (e) {
    state.anchors = null;
    $('trust-name').textContent = 'none';
    setVerdict('failed', `✘ ${file.name} is not a usable trust root`, e.message);
  }
}

function takePack(file) {
  state.pack = file;
  $('pack-name').textContent = `${file.name}, ${bytes(file.size)}`;
  maybeVerify();
}

async function takeFiles(files) {
  // A trust root is JSON; anything else is taken as a pack (its bytes decide the format).
  const list = Array.from(files);
  for (const f of list) if (/\.json$/i.test(f.name)) await takeTrustRoot(f);
  for (const f of list) if (!/\.json$/i.test(f.name)) takePack(f);
}

$('pack-input').addEventListener('change', (ev) => {
  if (ev.target.files[0]) takePack(ev.target.files[0]);
  ev.target.value = '';
});
$('trust-input').addEventListener('change', (ev) => {
  if (ev.target.files[0]) takeTrustRoot(ev.target.files[0]);
  ev.target.value = '';
});
for (const type of ['dragenter', 'dragover']) {
  document.addEventListener(type, (ev) => {
    ev.preventDefault();
    $('drop').classList.add('over');
  });
}
document.addEventListener('dragleave', (ev) => {
  if (ev.target === document.documentElement || ev.target === $('drop')) $('drop').classList.remove('over');
});
document.addEventListener('drop', (ev) => {
  ev.preventDefault();
  $('drop').classList.remove('over');
  if (ev.dataTransfer && ev.dataTransfer.files.length) takeFiles(ev.dataTransfer.files);
});
