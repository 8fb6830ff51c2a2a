// The manager's Wasm plugins: order, hooks, counters, the skipped ones with why, the ones a reload kept at their
// previous version (their new file failed to load), and reload.
import { api } from '../api.js';
import { message } from '../message.js';
import { h, stamp } from '../dom.js';

function show(page, listing) {
  const rows = listing.plugins.map((p) => h('tr', { dataset: { name: p.name } },
    h('td', {}, p.order), h('td', {}, p.name), h('td', {}, p.version ?? ''), h('td', {}, p.active ? 'yes' : 'no'),
    h('td', {}, p.hooks.join(', ')),
    ...['calls', 'denies', 'failures', 'jobs_enqueued', 'jobs_succeeded', 'jobs_failed'].map((c) => h('td', { class: 'num' }, p.counters[c]))));
  page.show(
    h('h1', {}, 'Plugins'),
    h('p', { class: 'muted' }, listing.directory ? `Directory ${listing.directory}, loaded ${stamp(listing.loaded_at)}` : 'No plugin directory is configured (MANAGER_PLUGIN_DIR).'),
    h('button', { id: 'reload', onclick: async (e) => {
      e.target.disabled = true;
      try {
        show(page, await api.post('/plugins/reload'));
        if (!page.signal.aborted) message('Plugins reloaded', 'info');
      } catch (err) {
        page.fail(err);
      } finally {
        e.target.disabled = false;
      }
    } }, 'Reload'),
    listing.plugins.length
      ? h('table', {}, h('thead', {}, h('tr', {}, ['#', 'Name', 'Version', 'Active', 'Hooks', 'Calls', 'Denies', 'Failures', 'Jobs queued', 'Jobs ok', 'Jobs failed'].map((c) => h('th', {}, c)))), h('tbody', {}, rows))
      : h('p', { class: 'muted' }, 'No plugins loaded.'),
    listing.skipped.length ? h('section', { class: 'card error' }, h('h2', {}, 'Skipped'),
      h('ul', {}, listing.skipped.map((s) => h('li', {}, h('strong', {}, s.file), `: ${s.error}`)))) : '',
    listing.kept?.length ? h('section', { id: 'kept', class: 'card error' }, h('h2', {}, 'Kept at their previous version'),
      h('ul', {}, listing.kept.map((k) => h('li', { dataset: { name: k.name } }, h('strong', {}, k.name), ` (${k.file}, running sha256 ${(k.sha256 ?? '').slice(0, 12)}): ${k.error}`)))) : '');
}

export async function render(page) {
  show(page, await page.get('/plugins'));
}
