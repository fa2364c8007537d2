// What the page keeps in the browser (localStorage): conversations, settings, theme, API key.
// Keys carry the page's path, so servers under different --api-prefix on one origin keep
// separate histories. Each conversation is its own key: saving one message rewrites one
// conversation, not all of them.

/**
 * @typedef {{role: 'user'|'assistant', content: string, images?: string[], timings?: object,
 *            error?: string, stopped?: boolean}} Message
 * @typedef {{id: string, title: string, created: number, updated: number,
 *            messages: Message[]}} Conversation
 */

export class Store {
  /** @param {Storage} storage @param {string} namespace */
  constructor(storage = window.localStorage, namespace = `llamaserver:${location.pathname}:`) {
    this.storage = storage;
    this.ns = namespace;
    this.onError = (/** @type {Error} */ _error) => {};
  }

  read(key, fallback) {
    try {
      const raw = this.storage.getItem(this.ns + key);
      return raw === null ? fallback : JSON.parse(raw);
    } catch {
      return fallback; // unreadable (corrupted or blocked storage): start afresh
    }
  }

  write(key, value) {
    try {
      this.storage.setItem(this.ns + key, JSON.stringify(value));
      return true;
    } catch (error) {
      this.onError(error); // quota exceeded (large images), or storage disabled
      return false;
    }
  }

  remove(key) {
    try {
      this.storage.removeItem(this.ns + key);
    } catch {
      // storage disabled: nothing was kept anyway
    }
  }

  /** @returns {{id: string, title: string, updated: number}[]} newest first */
  list() {
    const index = this.read('conversations', []);
    return Array.isArray(index) ? index.filter((c) => c && typeof c.id === 'string') : [];
  }

  /** @returns {Conversation|null} */
  load(id) {
    const conversation = this.read(`conversation:${id}`, null);
    if (!conversation || !Array.isArray(conversation.messages)) return null;
    return conversation;
  }

  /** @param {Conversation} conversation */
  save(conversation) {
    conversation.updated = Date.now();
    const ok = this.write(`conversation:${conversation.id}`, conversation);
    const index = this.list().filter((c) => c.id !== conversation.id);
    index.unshift({ id: conversation.id, title: conversation.title, updated: conversation.updated });
    this.write('conversations', index);
    return ok;
  }

  /** @returns {Conversation|null} the deleted conversation (for undo) */
  delete(id) {
    const conversation = this.load(id);
    this.remove(`conversation:${id}`);
    this.write('conversations', this.list().filter((c) => c.id !== id));
    return conversation;
  }

  /** @returns {Conversation} */
  create() {
    const id = (crypto.randomUUID?.() ?? `${Date.now()}-${Math.random()}`).replace(/[^\w-]/g, '');
    return { id, title: 'New chat', created: Date.now(), updated: Date.now(), messages: [] };
  }
}

/** A conversation's title from its first user message. */
export function titleFrom(text) {
  const line = String(text).trim().split('\n')[0].replace(/\s+/g, ' ');
  if (!line) return 'New chat';
  return line.length > 60 ? `${line.slice(0, 57)}…` : line;
}
