// The verifier's thread: runs pkg/helm_verify.wasm (embedded/web/wasm) on a File,
// streaming it into linear memory with FileReaderSync, so the page stays responsive and
// a large pack never has to fit in memory at once.
'use strict';

let exports_ = null;
let file = null;
let pos = 0;
let run = 0;
const reader = new FileReaderSync();

const imports = {
  env: {
    // Copies up to `len` bytes of the file at the current position to `ptr`.
    helm_read(ptr, len) {
      try {
        if (pos >= file.size) return 0;
        const end = Math.min(file.size, pos + len);
        const chunk = new Uint8Array(reader.readAsArrayBuffer(file.slice(pos, end)));
        // Memory may have grown (and its buffer been replaced) since the last call.
        new Uint8Array(exports_.memory.buffer, ptr, chunk.length).set(chunk);
        pos += chunk.length;
        return chunk.length;
      } catch (e) {
        return -1;
      }
    },
    helm_progress(bytes) {
      postMessage({ type: 'progress', run, bytes });
    },
  },
};

async function instantiate() {
  const response = fetch('pkg/helm_verify.wasm');
  try {
    return (await WebAssembly.instantiateStreaming(response, imports)).instance.exports;
  } catch (e) {
    // A server without the application/wasm type: compile from bytes.
    const bytes = await (await fetch('pkg/helm_verify.wasm')).arrayBuffer();
    return (await WebAssembly.instantiate(bytes, imports)).instance.exports;
  }
}

let ready = instantiate().then((e) => (exports_ = e));

onmessage = async (ev) => {
  const { file: f, anchors } = ev.data;
  run = ev.data.run;
  await ready;
  file = f;
  pos = 0;
  const ex = exports_;
  const t0 = performance.now();
  let report;
  const p = ex.helm_alloc(anchors.length);
  try {
    new Uint8Array(ex.memory.buffer, p, anchors.length).set(anchors);
    ex.helm_verify(p, anchors.length / 32);
    const bytes = new Uint8Array(ex.memory.buffer, ex.helm_report_ptr(), ex.helm_report_len());
    report = JSON.parse(new TextDecoder().decode(bytes));
    ex.helm_free(p, anchors.length);
  } catch (e) {
    // A trap is a bug in the verifier: report it, and start from a fresh instance.
    report = { verified: false, error: { code: 'INTERNAL_ERROR', number: null, detail: String(e), record_index: null } };
    ready = instantiate().then((e) => (exports_ = e));
  }
  file = null;
  postMessage({ type: 'done', run, report, ms: performance.now() - t0 });
};
