// The Admin view's legal holds: the holds in force (GET /v1/holds), a form
// that sets one (POST /v1/holds) and a confirmation dialog that lifts one
// set over HTTP (DELETE /v1/holds/{name}). Holds from the configuration file
// are listed but can only be removed there.

import * as api from './api.js';
import { h, clear, errorEl, announce, seg } from './dom.js';

let uid = 0;

/** "2026-01-01 to 2026-06-30", "from 2026-01-01 on", "every day". */
export function holdDays(hold) {
  const { from, until } = hold;
  if (from && until) return from === until ? `${from} only` : `${from} to ${until}`;
  if (from) return `from ${from} on`;
  if (until) return `up to ${until}`;
  return 'every day';
}

/**
 * The holds section. `onChange()` runs after a hold was added or lifted (the
 * retention plan depends on the holds).
 * Returns {el, show(holds, configuredNames), showError(err)}.
 */
export function holdsSection({ onChange }) {
  const id = `holds-${++uid}`;
  const titleEl = h('h2', { id: `${id}-title`, tabindex: '-1' }, 'Legal holds');
  const list = h('div', { 'data-test': 'holds' }, h('p', { class: 'muted', role: 'status' }, 'Loading…'));

  // The form: every field of a hold, labelled, with what it means.
  const field = (name, label, help, attrs = {}) => {
    const input = h('input', { id: `${id}-${name}`, name, type: 'text', autocomplete: 'off', spellcheck: 'false',
      'aria-describedby': `${id}-${name}-help`, ...attrs });
    return {
      input,
      el: h('div', { class: `ctl ctl-${name}` },
        h('label', { for: input.id }, label),
        input,
        h('span', { class: 'help muted', id: `${id}-${name}-help` }, help)),
    };
  };
  const fName = field('name', 'Name', 'Unique; 1 to 128 of A–Z a–z 0–9 - _ . (how it is lifted).', { required: true, maxlength: 128 });
  const fTenant = field('tenant', 'Tenant (optional)', 'Only days holding events of this tenant; empty: every tenant.');
  const fFrom = field('from', 'From (optional)', 'First UTC day held; empty: from the oldest.', { type: 'date' });
  const fUntil = field('until', 'Until (optional)', 'Last UTC day held, inclusive; empty: no end.', { type: 'date' });
  const fReason = field('reason', 'Reason', 'A case number or request: shown in the retention plan and the drop log.', { maxlength: 1024 });
  const formMsg = h('div', { class: 'form-msg', 'aria-live': 'polite' });
  const submit = h('button', { type: 'submit', class: 'primary', 'data-test': 'add-hold' }, 'Add hold');
  const form = h('form', { class: 'hold-form', 'data-test': 'hold-form', novalidate: true, 'aria-labelledby': `${id}-form-title` },
    h('h3', { id: `${id}-form-title` }, 'Add a legal hold'),
    h('div', { class: 'hold-grid' }, fName.el, fTenant.el, fFrom.el, fUntil.el, fReason.el),
    h('div', { class: 'form-actions' }, submit, formMsg));
  const inputs = [fName, fTenant, fFrom, fUntil, fReason].map((f) => f.input);

  form.addEventListener('submit', async (e) => {
    e.preventDefault();
    clear(formMsg);
    for (const i of inputs) i.removeAttribute('aria-invalid');
    // Empty optional fields are left out: the API reads them as "any".
    const hold = { name: fName.input.value.trim() };
    const tenant = fTenant.input.value.trim();
    if (tenant) hold.tenant = tenant;
    if (fFrom.input.value) hold.from = fFrom.input.value;
    if (fUntil.input.value) hold.until = fUntil.input.value;
    const reason = fReason.input.value.trim();
    if (reason) hold.reason = reason;
    submit.disabled = true;
    submit.setAttribute('aria-busy', 'true');
    try {
      const saved = await api.post('/v1/holds', hold);
      form.reset();
      const text = `Hold ${saved?.name ?? hold.name} is in force.`;
      formMsg.append(h('p', { class: 'ok', role: 'status' }, text));
      announce(text);
      onChange();
    } catch (err) {
      if (err.status === 401) return; // the key prompt takes over
      formMsg.append(errorEl(err));
      // The field at fault, when the API names one (or the name, which most refusals concern).
      const bad = inputs.find((i) => i.name === err.field) || (/\bname\b/i.test(err.message) ? fName.input : null);
      if (bad) { bad.setAttribute('aria-invalid', 'true'); bad.focus(); }
    } finally {
      submit.disabled = false;
      submit.removeAttribute('aria-busy');
    }
  });

  // The confirmation: a modal <dialog> (focus stays inside, Escape cancels).
  const dlgTitle = h('h2', { id: `${id}-dlg-title` }, 'Lift the hold?');
  const dlgText = h('p', { id: `${id}-dlg-text` });
  const dlgMsg = h('div', { 'aria-live': 'polite' });
  const cancelBtn = h('button', { type: 'button', 'data-test': 'lift-cancel' }, 'Keep the hold');
  const confirmBtn = h('button', { type: 'button', class: 'danger', 'data-test': 'lift-confirm' }, 'Lift hold');
  const dialog = h('dialog', { class: 'confirm', 'data-test': 'lift-dialog', 'aria-labelledby': dlgTitle.id, 'aria-describedby': dlgText.id },
    dlgTitle, dlgText, dlgMsg, h('div', { class: 'form-actions' }, cancelBtn, confirmBtn));
  let lifting = null; // {name, trigger}
  cancelBtn.addEventListener('click', () => dialog.close());
  dialog.addEventListener('close', () => {
    const t = lifting && lifting.trigger;
    lifting = null;
    if (t && t.isConnected) t.focus();
    else titleEl.focus();
  });
  confirmBtn.addEventListener('click', async () => {
    if (!lifting) return;
    const { name } = lifting;
    clear(dlgMsg);
    confirmBtn.disabled = true;
    try {
      await api.del(`/v1/holds/${seg(name)}`);
      lifting = null;
      dialog.close();
      announce(`Hold ${name} lifted.`);
      onChange();
    } catch (err) {
      if (err.status === 401) { dialog.close(); return; }
      dlgMsg.append(errorEl(err));
    } finally {
      confirmBtn.disabled = false;
    }
  });

  function askLift(hold, trigger) {
    clear(dlgMsg);
    dlgTitle.textContent = `Lift the hold ${hold.name}?`;
    dlgText.textContent = `It keeps ${hold.tenant ? `the days holding events of tenant ${hold.tenant}` : 'the days of every tenant'}`
      + ` (${holdDays(hold)}) past their TTL. Once lifted, the next retention run drops those past their TTL`
      + ' unless another hold keeps them; dropped days cannot be restored except from a backup.';
    lifting = { name: hold.name, trigger };
    dialog.showModal();
    cancelBtn.focus();
  }

  function show(holds, configured) {
    clear(list);
    if (!holds.length) {
      list.append(h('p', { class: 'muted', 'data-test': 'no-holds' }, 'No legal hold is in force: retention drops every day past its TTL.'));
      return;
    }
    const rows = holds.map((hold) => {
      const fromConfig = configured.has(hold.name);
      const lift = fromConfig ? null
        : h('button', { type: 'button', class: 'danger-outline', 'data-test': 'lift', 'aria-label': `Lift the hold ${hold.name}` }, 'Lift…');
      if (lift) lift.addEventListener('click', () => askLift(hold, lift));
      return h('tr', { 'data-test': 'hold-row', 'data-name': hold.name },
        h('th', { scope: 'row', class: 'mono' }, hold.name),
        h('td', null, hold.tenant ? hold.tenant : h('span', { class: 'muted' }, 'every tenant')),
        h('td', { class: 'mono' }, holdDays(hold)),
        h('td', { class: 'c-reason' }, hold.reason ? hold.reason : h('span', { class: 'muted' }, '—')),
        h('td', null, fromConfig ? 'configuration file' : 'over HTTP'),
        h('td', { class: 'c-act' }, lift || h('span', { class: 'muted', title: 'Remove it from [[retention.holds]] in the configuration file, then reload' }, 'in the file')));
    });
    list.append(h('table', { class: 'admin-table holds-table' },
      h('caption', { class: 'sr-only' }, 'Legal holds in force'),
      h('thead', null, h('tr', null,
        h('th', { scope: 'col' }, 'Name'), h('th', { scope: 'col' }, 'Tenant'), h('th', { scope: 'col' }, 'UTC days held'),
        h('th', { scope: 'col' }, 'Reason'), h('th', { scope: 'col' }, 'Set in'), h('th', { scope: 'col' }, h('span', { class: 'sr-only' }, 'Action')))),
      h('tbody', null, rows)));
  }

  function showError(err) {
    clear(list).append(errorEl(err));
  }

  const el = h('section', { class: 'admin-section', 'aria-labelledby': titleEl.id, 'data-test': 'holds-section' },
    titleEl,
    h('p', { class: 'muted intro' }, 'A legal hold keeps every UTC day partition it matches (by tenant and/or an inclusive date range) past its TTL. ',
      'Retention drops only the oldest days, so a held day also keeps the expired days after it.'),
    list, form, dialog);

  return { el, show, showError };
}
