// The completion mode (the seed-era playground): a raw prompt streamed through POST
// /completion, the server's shared system prompt with its user and assistant names
// (GET /props), and with n_probs each token's top candidates on hover, focus or tap.

import { describeError } from './api.js';
import { autoGrow, describeTimings, elements, h, timingsDetail } from './ui.js';

// whitespace made visible in the candidates list
const shown = (text) => (text === '' ? '∅' : text.replace(/ /g, '␣').replace(/\n/g, '↵').replace(/\t/g, '⇥'));

export class CompletionView {
  constructor({ client, store, settings, app }) {
    Object.assign(this, { client, store, settings, app });
    Object.assign(this, elements({
      prompt: 'pg-prompt', nProbs: 'pg-nprobs', runButton: 'pg-run', stopButton: 'pg-stop',
      appendButton: 'pg-append', output: 'pg-output', stats: 'pg-stats', systemNote: 'pg-system-note',
      popover: 'probs',
    }));
    this.system = elements({ prompt: 'pg-system-prompt', user: 'pg-user-name', assistant: 'pg-assistant-name' });
    this.controller = null;
    this.generated = '';
    this.systemEdited = false;
    this.tokenProbs = new WeakMap(); // token span -> its completion_probabilities entries
    this.pinned = null;
    const saved = this.store.read('completion', {});
    this.prompt.value = saved.prompt ?? '';
    this.nProbs.value = saved.n_probs ?? '0';
    this.bind();
  }

  bind() {
    const save = () => this.store.write('completion', { prompt: this.prompt.value, n_probs: this.nProbs.value });
    this.prompt.addEventListener('input', () => { save(); autoGrow(this.prompt); });
    this.nProbs.addEventListener('change', save);
    this.prompt.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && (event.ctrlKey || event.metaKey)) {
        event.preventDefault();
        this.run();
      }
    });
    this.runButton.addEventListener('click', () => this.run());
    this.stopButton.addEventListener('click', () => this.stop());
    this.appendButton.addEventListener('click', () => {
      this.prompt.value += this.generated;
      this.generated = '';
      this.output.replaceChildren();
      this.stats.textContent = '';
      this.appendButton.disabled = true;
      save();
      autoGrow(this.prompt);
      this.prompt.focus();
    });
    for (const field of Object.values(this.system)) {
      field.addEventListener('input', () => { this.systemEdited = true; this.describeSystem(); });
    }
    // candidates: hover or keyboard focus shows them, a tap pins them until the next tap
    this.output.addEventListener('pointerover', (e) => { if (!this.pinned) this.showProbs(e.target); });
    this.output.addEventListener('pointerout', (e) => { if (!this.pinned && e.target.classList?.contains('tok')) this.hideProbs(); });
    this.output.addEventListener('focusin', (e) => this.showProbs(e.target));
    this.output.addEventListener('focusout', () => { if (!this.pinned) this.hideProbs(); });
    this.output.addEventListener('click', (e) => {
      const tok = e.target.closest?.('.tok');
      if (!tok || this.pinned === tok) { this.pinned = null; this.hideProbs(); return; }
      this.pinned = tok;
      this.showProbs(tok);
    });
    document.addEventListener('keydown', (e) => { if (e.key === 'Escape') { this.pinned = null; this.hideProbs(); } });
  }

  /** The server's shared system prompt and names (GET /props), unless the user is editing them. */
  setServerProps(props) {
    if (this.systemEdited || !props) return;
    this.system.prompt.value = props.system_prompt ?? '';
    this.system.user.value = props.user_name ?? '';
    this.system.assistant.value = props.assistant_name ?? '';
    this.describeSystem();
  }

  describeSystem() {
    const { prompt, user, assistant } = this.system;
    const names = [user.value && `user “${user.value}”`, assistant.value && `assistant “${assistant.value}”`].filter(Boolean);
    let note = prompt.value.trim() ? 'set' : 'none';
    if (names.length) note += ` · ${names.join(', ')}`;
    if (this.systemEdited) note += ' · sent with the next completion';
    this.systemNote.textContent = `(${note})`;
  }

  get busy() {
    return this.controller !== null;
  }

  stop() {
    this.controller?.abort();
  }

  async run() {
    if (this.busy) return;
    const params = this.settings.paramsOrExplain('completion');
    if (!params) return;
    const nProbs = Math.max(0, Math.min(20, Number.parseInt(this.nProbs.value, 10) || 0));
    const userName = this.system.user.value;
    const body = { ...params, prompt: this.prompt.value, n_probs: nProbs, stop: userName ? [userName] : [] };
    if (this.systemEdited) {
      body.system_prompt = { prompt: this.system.prompt.value, anti_prompt: userName, assistant_name: this.system.assistant.value };
    }
    this.generated = '';
    this.hideProbs();
    this.output.replaceChildren(h('span', { className: 'pg-echo', text: this.prompt.value }));
    this.stats.textContent = '';
    this.appendButton.disabled = true;
    this.controller = new AbortController();
    this.setBusy(true);
    let timings = null;
    let stopped = false;
    try {
      for await (const data of this.client.complete(body, this.controller)) {
        if (data.content) this.appendTokens(data);
        if (data.timings) timings = data.timings;
      }
      stopped = this.controller.signal.aborted;
      if (body.system_prompt) {
        this.systemEdited = false;
        this.describeSystem();
      }
    } catch (error) {
      this.output.append(h('p', { className: 'message-error', text: describeError(error) }));
      if (error.status === 0 || error.status === 503) this.app.checkServer();
    } finally {
      this.controller = null;
      this.setBusy(false);
      this.stats.textContent = stopped ? 'stopped' : describeTimings(timings);
      this.stats.title = timingsDetail(timings);
      this.appendButton.disabled = !this.generated;
    }
  }

  appendTokens(data) {
    this.generated += data.content;
    const entries = Array.isArray(data.completion_probabilities) ? data.completion_probabilities : [];
    const joined = entries.map((e) => e.content ?? '').join('');
    // one span per token when the entries spell the text, else one span for the chunk
    const pieces = entries.length && joined === data.content
      ? entries.map((e) => [e.content, [e]])
      : [[data.content, entries]];
    for (const [text, probs] of pieces) {
      if (!probs.length) {
        this.output.append(text);
        continue;
      }
      const chosen = probs.length === 1 ? probs[0].probs?.find((p) => p.tok_str === text)?.prob : undefined;
      const level = chosen === undefined ? 'unknown' : chosen >= 0.6 ? 'high' : chosen >= 0.2 ? 'mid' : 'low';
      const span = h('span', { className: `tok p-${level}`, text, attrs: { tabindex: 0 } });
      this.tokenProbs.set(span, probs);
      this.output.append(span);
    }
  }

  showProbs(target) {
    const span = target?.closest?.('.tok');
    const entries = span && this.tokenProbs.get(span);
    if (!entries) return;
    const blocks = entries.map((entry) => h('div', { className: 'probs-entry' }, [
      h('div', { className: 'probs-token', text: shown(entry.content ?? '') }),
      h('ol', {}, (entry.probs ?? []).map((p) => {
        const bar = h('span', { className: 'bar' });
        bar.style.width = `${Math.round(Math.max(0, Math.min(1, p.prob)) * 100)}%`;
        return h('li', { className: p.tok_str === entry.content ? 'chosen' : '' }, [
          h('code', { text: shown(p.tok_str ?? '') }),
          h('span', { className: 'bar-track' }, [bar]),
          h('span', { className: 'pct', text: `${(p.prob * 100).toFixed(1)}%` }),
        ]);
      })),
    ]));
    this.popover.replaceChildren(...blocks);
    this.popover.hidden = false;
    const rect = span.getBoundingClientRect();
    const box = this.popover.getBoundingClientRect();
    const left = Math.min(Math.max(8, rect.left), window.innerWidth - box.width - 8);
    const below = rect.bottom + 6 + box.height < window.innerHeight;
    this.popover.style.left = `${left}px`;
    this.popover.style.top = `${below ? rect.bottom + 6 : rect.top - box.height - 6}px`;
  }

  hideProbs() {
    this.popover.hidden = true;
  }

  setBusy(busy) {
    this.runButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.app.setActivity(busy ? 'Generating…' : null);
  }
}
