// The page: wires the views together, follows the server's state (loading, ready, busy,
// unreachable), asks for the API key when the server wants one, and keeps the theme.

import { Client, describeError } from './api.js';
import { ChatView } from './chat.js';
import { CompletionView } from './playground.js';
import { Settings } from './settings.js';
import { Store } from './store.js';
import { elements, icon, toast } from './ui.js';

const THEMES = ['auto', 'light', 'dark'];

class App {
  constructor() {
    this.store = new Store();
    this.store.onError = () => toast('The browser refused to store more: delete old conversations (images take room).');
    Object.assign(this, elements({
      banner: 'banner', status: 'status', statusText: 'status-text', title: 'title', model: 'model',
      sidebar: 'sidebar', scrim: 'scrim', keyDialog: 'key-dialog',
    }));
    this.activity = null;
    this.serverState = 'unknown';
    this.checking = null;
    this.keyRequest = null;
    this.client = new Client(this.store, (reason) => this.askKey(reason));
    this.settings = new Settings(this.store, document.getElementById('settings-dialog'));
    this.settings.onKeyForget = () => {
      this.client.apiKey = '';
      this.describeKey();
      toast('The API key is forgotten.');
    };
    const parts = { client: this.client, store: this.store, settings: this.settings, app: this };
    this.chat = new ChatView(parts);
    this.completion = new CompletionView(parts);
    this.bind();
    this.applyTheme(this.store.read('theme', 'auto'));
    this.showMode(this.store.read('mode', 'chat'));
    this.describeKey();
  }

  bind() {
    const $ = (id) => document.getElementById(id);
    $('new-chat').addEventListener('click', () => this.chat.newChat());
    $('open-settings').addEventListener('click', () => {
      this.closeSidebar();
      this.describeKey();
      this.settings.open();
    });
    $('theme').addEventListener('click', () => {
      const next = THEMES[(THEMES.indexOf(this.store.read('theme', 'auto')) + 1) % THEMES.length];
      this.store.write('theme', next);
      this.applyTheme(next);
    });
    $('key-input').addEventListener('keydown', (event) => {
      if (event.key === 'Enter') { // the form's first button is Cancel: Enter means the key
        event.preventDefault();
        this.keyDialog.close('ok');
      }
    });
    $('open-sidebar').addEventListener('click', () => this.openSidebar());
    $('close-sidebar').addEventListener('click', () => this.closeSidebar());
    this.scrim.addEventListener('click', () => this.closeSidebar());
    for (const tab of document.querySelectorAll('[data-mode]')) {
      tab.addEventListener('click', () => { this.showMode(tab.dataset.mode); this.closeSidebar(); });
    }
    document.addEventListener('keydown', (event) => {
      if (event.key !== 'Escape' || document.querySelector('dialog[open]')) return;
      if (this.chat.busy) this.chat.stop();
      else if (this.completion.busy) this.completion.stop();
      else this.closeSidebar();
    });
  }

  // ---- layout ------------------------------------------------------------------------
  showMode(mode) {
    const chat = mode !== 'completion';
    document.getElementById('chat-view').hidden = !chat;
    document.getElementById('completion-view').hidden = chat;
    for (const tab of document.querySelectorAll('[data-mode]')) {
      tab.setAttribute('aria-selected', String(tab.dataset.mode === (chat ? 'chat' : 'completion')));
    }
    this.store.write('mode', chat ? 'chat' : 'completion');
    this.setTitle(chat ? (this.chat.conversation.messages.length ? this.chat.conversation.title : 'New chat') : 'Completion');
  }

  setTitle(text) {
    if (document.getElementById('chat-view').hidden && text !== 'Completion') return;
    this.title.textContent = text;
    document.title = `${text} · llamaserver`;
  }

  openSidebar() {
    this.sidebar.classList.add('open');
    this.scrim.hidden = false;
  }

  closeSidebar() {
    this.sidebar.classList.remove('open');
    this.scrim.hidden = true;
  }

  applyTheme(theme) {
    if (theme === 'auto') delete document.documentElement.dataset.theme;
    else document.documentElement.dataset.theme = theme;
    const button = document.getElementById('theme');
    button.replaceChildren(icon(theme === 'auto' ? 'auto' : theme === 'light' ? 'sun' : 'moon'),
      Object.assign(document.createElement('span'), { textContent: `Theme: ${theme}` }));
    button.setAttribute('aria-label', `Theme: ${theme} (change)`);
  }

  // ---- server state ------------------------------------------------------------------
  setActivity(text) {
    this.activity = text;
    this.showStatus();
  }

  showStatus() {
    const labels = { ok: 'Ready', loading: 'Loading model…', unreachable: 'Offline', error: 'Error', unknown: 'Connecting…' };
    const state = this.serverState === 'ok' && this.activity ? 'busy' : this.serverState;
    this.status.dataset.state = state;
    this.statusText.textContent = state === 'busy' ? this.activity : labels[this.serverState];
  }

  showBanner(kind, text) {
    this.banner.hidden = !text;
    this.banner.className = `banner ${kind ?? ''}`;
    this.banner.textContent = text ?? '';
  }

  /** Poll /health until the server is ready (at start, and after a failed request). */
  checkServer() {
    if (!this.checking) this.checking = this.waitForServer().finally(() => { this.checking = null; });
    return this.checking;
  }

  async waitForServer() {
    let delay = 500;
    for (;;) {
      const { state, body } = await this.client.health();
      this.serverState = state;
      this.showStatus();
      if (state === 'ok') {
        this.showBanner(null, null);
        await this.loadServerInfo();
        return;
      }
      if (state === 'loading') {
        this.showBanner('info', 'The server is loading the model. The page is ready as soon as it is.');
        delay = 1000;
      } else if (state === 'unreachable') {
        this.showBanner('warn', `The server at ${location.host} cannot be reached. Retrying…`);
        delay = Math.min(delay * 2, 10000);
      } else {
        this.showBanner('error', `The server reports an error${body?.error?.message ? `: ${body.error.message}` : ''}. Retrying…`);
        delay = Math.min(delay * 2, 10000);
      }
      await new Promise((resolve) => setTimeout(resolve, delay));
    }
  }

  async loadServerInfo() {
    try {
      const models = await this.client.json('v1/models'); // with --api-key, the key is asked for here
      const id = models?.data?.[0]?.id ?? '';
      this.model.textContent = id.split(/[\\/]/).pop().replace(/\.gguf$/i, '');
      this.model.title = id;
    } catch {
      this.model.textContent = '';
    }
    try {
      const props = await this.client.json('props');
      this.settings.setDefaults(props.default_generation_settings);
      this.chat.setVision(Boolean(props.modalities?.vision));
      this.completion.setServerProps(props);
    } catch (error) {
      if (error.status !== 401) this.showBanner('warn', describeError(error)); // 401: the user cancelled the key
    }
    document.documentElement.dataset.server = 'ready'; // for scripts and tests: all is loaded
  }

  // ---- API key -----------------------------------------------------------------------
  askKey(reason) {
    if (this.keyRequest) return this.keyRequest;
    const dialog = this.keyDialog;
    const input = dialog.querySelector('#key-input');
    dialog.querySelector('#key-reason').textContent = reason;
    input.value = '';
    this.keyRequest = new Promise((resolve) => {
      dialog.addEventListener('close', () => {
        this.keyRequest = null;
        const key = dialog.returnValue === 'ok' ? input.value.trim() : '';
        this.describeKey();
        resolve(key || null);
      }, { once: true });
    });
    dialog.showModal();
    input.focus();
    return this.keyRequest;
  }

  describeKey() {
    document.getElementById('key-state').textContent = this.client.apiKey ? 'A key is saved in this browser.' : 'No key saved.';
    document.getElementById('forget-key').hidden = !this.client.apiKey;
  }
}

const app = new App();
app.checkServer();
