// The settings dialog and what it puts into requests. An empty field means "the server's
// default" and is not sent at all, so a request carries exactly what the user chose; the
// placeholders show the server's defaults (GET /props).

import { toast } from './ui.js';

const NUMBERS = {
  // name: [request field in chat, in /completion, integer?, default_generation_settings key]
  temperature: ['temperature', 'temperature', false, 'temperature'],
  top_k: ['top_k', 'top_k', true, 'top_k'],
  top_p: ['top_p', 'top_p', false, 'top_p'],
  min_p: ['min_p', 'min_p', false, 'min_p'],
  max_tokens: ['max_tokens', 'n_predict', true, 'n_predict'],
  repeat_penalty: ['repeat_penalty', 'repeat_penalty', false, 'repeat_penalty'],
  seed: ['seed', 'seed', true, 'seed'],
};

const EMPTY = {
  system: '', constraint: '', constraint_text: '',
  ...Object.fromEntries(Object.keys(NUMBERS).map((k) => [k, ''])),
};

export class SettingsError extends Error {}

export class Settings {
  /**
   * @param {import('./store.js').Store} store
   * @param {HTMLDialogElement} dialog the settings dialog (its form's fields are named as EMPTY)
   */
  constructor(store, dialog) {
    this.store = store;
    this.dialog = dialog;
    this.form = dialog.querySelector('form');
    this.values = { ...EMPTY, ...this.store.read('settings', {}) };
    this.onKeyForget = () => {};
    this.fill();
    this.form.addEventListener('input', () => this.collect());
    this.form.addEventListener('change', () => this.collect());
    dialog.querySelector('#reset-settings').addEventListener('click', () => {
      this.values = { ...EMPTY };
      this.fill();
      this.collect();
    });
    dialog.querySelector('#forget-key').addEventListener('click', () => this.onKeyForget());
    dialog.addEventListener('click', (event) => {
      if (event.target === dialog) dialog.close(); // a click on the backdrop
    });
  }

  open() {
    this.fill();
    this.showConstraintError();
    this.dialog.showModal();
  }

  fill() {
    for (const [name, value] of Object.entries(this.values)) {
      const field = this.form.elements.namedItem(name);
      if (field) field.value = value;
    }
    this.updateConstraintField();
  }

  collect() {
    for (const name of Object.keys(EMPTY)) {
      const field = this.form.elements.namedItem(name);
      if (field) this.values[name] = field.value;
    }
    this.store.write('settings', this.values);
    this.updateConstraintField();
    this.showConstraintError();
  }

  updateConstraintField() {
    const text = this.form.elements.namedItem('constraint_text');
    const kind = this.values.constraint;
    text.closest('label').hidden = !kind;
    text.placeholder = kind === 'json_schema'
      ? '{"type": "object", "properties": {"answer": {"type": "string"}}}'
      : 'root ::= "yes" | "no"';
  }

  showConstraintError() {
    const note = this.dialog.querySelector('#constraint-error');
    let message = '';
    try {
      this.constraint('chat');
    } catch (error) {
      message = error.message;
    }
    note.textContent = message;
    note.hidden = !message;
  }

  /** Show the server's defaults as placeholders. */
  setDefaults(defaults) {
    for (const [name, [, , , key]] of Object.entries(NUMBERS)) {
      const field = this.form.elements.namedItem(name);
      const value = defaults?.[key];
      if (field && value !== undefined) {
        field.placeholder = key === 'seed' && value === 4294967295 ? 'random' : String(value);
      }
    }
  }

  get systemPrompt() {
    return this.values.system.trim() ? this.values.system : '';
  }

  constraint(mode) {
    const text = this.values.constraint_text;
    if (!this.values.constraint || !text.trim()) return {};
    if (this.values.constraint === 'grammar') return { grammar: text };
    let schema;
    try {
      schema = JSON.parse(text);
    } catch (error) {
      throw new SettingsError(`The JSON schema is not valid JSON: ${error.message}`);
    }
    if (mode === 'chat') return { response_format: { type: 'json_schema', json_schema: { name: 'answer', schema } } };
    return { json_schema: schema };
  }

  /** `params(mode)`, or null after saying what cannot be sent (and opening the dialog). */
  paramsOrExplain(mode) {
    try {
      return this.params(mode);
    } catch (error) {
      if (!(error instanceof SettingsError)) throw error;
      toast(error.message);
      this.open();
      return null;
    }
  }

  /**
   * The request options these settings give, for 'chat' (/v1/chat/completions) or
   * 'completion' (/completion). Throws SettingsError for a value that cannot be sent.
   */
  params(mode) {
    const params = {};
    for (const [name, [chatKey, completionKey, integer]] of Object.entries(NUMBERS)) {
      const raw = String(this.values[name]).trim();
      if (raw === '') continue;
      const value = Number(raw);
      if (!Number.isFinite(value) || (integer && !Number.isInteger(value))) {
        throw new SettingsError(`${name.replace('_', ' ')} must be ${integer ? 'a whole number' : 'a number'}.`);
      }
      params[mode === 'chat' ? chatKey : completionKey] = value;
    }
    return { ...params, ...this.constraint(mode) };
  }
}
