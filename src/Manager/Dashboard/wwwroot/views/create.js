// Create a task from a .wasm upload with inputs: POST /tasks, then PUT /tasks/{id}/upload, then (optionally) start.
import { api } from '../api.js';
import { message, flash } from '../message.js';
import { h } from '../dom.js';

const MIB = 1024 * 1024;
const MAX_UPLOAD = 100 * MIB - 64 * 1024;
const WASM_MAGIC = [0x00, 0x61, 0x73, 0x6d]; // "\0asm", the first bytes of every binary WebAssembly module

/** Why file cannot be a binary .wasm module (a .wat text, an archive), or null. */
async function notWasm(file) {
  if (!/\.wasm$/i.test(file.name)) return `${file.name} is not a WebAssembly module: its name must end in .wasm (a .wat text is compiled first, e.g. by wat2wasm)`;
  const head = new Uint8Array(await file.slice(0, 4).arrayBuffer());
  if (head.length < 4 || WASM_MAGIC.some((b, i) => head[i] !== b)) {
    const seen = head.length ? `starts with ${Array.from(head, (b) => b.toString(16).padStart(2, '0')).join(' ')}` : 'is empty';
    return `${file.name} is not a WebAssembly module: a module starts with the bytes 00 61 73 6d ("\\0asm"), this file ${seen}`;
  }
  return null;
}

export async function render(page) {
  const form = h('form', { class: 'create card', id: 'create' },
    h('label', {}, 'WebAssembly module (.wasm)', h('input', { type: 'file', name: 'file', accept: '.wasm', required: true })),
    h('label', {}, 'Function', h('input', { name: 'name', value: 'main', required: true })),
    h('label', {}, 'Inputs (comma-separated)', h('input', { name: 'inputs', placeholder: '10,32' })),
    h('label', {}, 'Environment (KEY=VALUE per line)', h('textarea', { name: 'env', rows: 2 })),
    h('label', {}, 'Metadata (JSON object)', h('input', { name: 'metadata', placeholder: '{"team":"edge"}' })),
    h('label', { class: 'check' }, h('input', { type: 'checkbox', name: 'start', checked: true }), ' start it now'),
    h('button', { type: 'submit' }, 'Create task'));

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    const data = new FormData(form);
    const file = data.get('file');
    // The manager reads at most 100 MiB of a request (ManagerApp.MaxRequestBodyBytes); the form's own parts take a few
    // hundred bytes. Checked before anything is sent: over it, the upload failed after the task was created.
    if (file && file.size > MAX_UPLOAD) {
      message(`${file.name} is too large: ${(file.size / MIB).toFixed(1)} MiB, over the manager's request limit of 100 MiB`);
      return;
    }
    // The manager checks the module at the upload, after the task was created: a wrong file left a task without one.
    const wrong = file ? await notWasm(file) : null;
    if (wrong) {
      message(wrong);
      return;
    }
    const body = { name: data.get('name').trim() };
    const inputs = data.get('inputs').trim();
    if (inputs) body.inputs = inputs.split(',').map((s) => s.trim());
    const lines = data.get('env').split('\n').map((l) => l.trim()).filter(Boolean);
    const bad = lines.find((l) => l.indexOf('=') <= 0);
    if (bad !== undefined) {
      message(`environment: "${bad}" is not KEY=VALUE`); // as the CLI's --env, rather than sending KEY= silently
      return;
    }
    const env = Object.fromEntries(lines.map((l) => [l.slice(0, l.indexOf('=')), l.slice(l.indexOf('=') + 1)]));
    if (Object.keys(env).length) body.env = env;
    const metadata = data.get('metadata').trim();
    if (metadata) {
      try {
        body.metadata = JSON.parse(metadata);
      } catch (err) {
        message(`metadata is not JSON: ${err.message}`);
        return;
      }
    }
    const button = form.querySelector('button[type=submit]');
    button.disabled = true;
    try {
      const task = await api.post('/tasks', body);
      try {
        await api.upload(`/tasks/${task.id}/upload`, file);
        if (data.get('start')) await api.post(`/tasks/${task.id}/start`);
      } catch (err) {
        // The task exists without its module (or unstarted): say so and show it rather than losing it.
        flash(err.message);
        location.hash = `#/tasks/${task.id}`;
        return;
      }
      location.hash = `#/tasks/${task.id}`;
    } catch (err) {
      message(err.message);
    } finally {
      button.disabled = false;
    }
  });

  page.show(h('h1', {}, 'New task'), form);
}
