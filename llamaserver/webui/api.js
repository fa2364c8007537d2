// The page's connection to its server: the API key, error answers as LlamaError, and the two
// streams (chat from /v1/chat/completions, raw completion through completion.js's llama()).

import { LlamaError, completionStream, errorFromResponse, readEventData } from './completion.js';

export { LlamaError };

export class Client {
  /**
   * @param {import('./store.js').Store} store where the API key is kept
   * @param {(reason: string) => Promise<string|null>} askKey asks the user for a key (null: cancelled)
   */
  constructor(store, askKey) {
    this.store = store;
    this.askKey = askKey;
    this.base = new URL('.', location.href).href; // the API lives next to the page (--api-prefix)
  }

  get apiKey() {
    return this.store.read('apiKey', '');
  }

  set apiKey(key) {
    if (key) this.store.write('apiKey', key);
    else this.store.remove('apiKey');
  }

  headers(extra = {}) {
    const headers = { ...extra };
    if (this.apiKey) headers.Authorization = `Bearer ${this.apiKey}`;
    return headers;
  }

  /** Ask for a key after a 401; false when the user cancels. */
  async renewKey(refused) {
    const key = await this.askKey(refused && this.apiKey
      ? 'The server refused this API key. Enter a valid one.'
      : 'This server needs an API key.');
    if (!key) return false;
    this.apiKey = key;
    return true;
  }

  /** fetch() that throws LlamaError for a failure and asks for the API key on 401. */
  async request(path, init = {}) {
    for (;;) {
      let response;
      try {
        response = await fetch(new URL(path, this.base), { ...init, headers: this.headers(init.headers) });
      } catch (error) {
        if (error.name === 'AbortError') throw error;
        throw new LlamaError('The server cannot be reached.');
      }
      if (response.status === 401 && await this.renewKey(true)) continue;
      if (!response.ok) throw await errorFromResponse(response);
      return response;
    }
  }

  async json(path) {
    return (await this.request(path)).json();
  }

  /** GET /health without raising for 503: {state: 'ok'|'loading'|'error'|'unreachable', body}. */
  async health() {
    let response;
    try {
      response = await fetch(new URL('health', this.base), { cache: 'no-store' });
    } catch {
      return { state: 'unreachable', body: null };
    }
    const body = await response.json().catch(() => null);
    if (response.ok) return { state: 'ok', body };
    if (response.status === 503 && body?.status === 'loading model') return { state: 'loading', body };
    if (response.status === 503) return { state: 'ok', body }; // no slot free: still usable
    return { state: 'error', body };
  }

  /**
   * Stream a chat completion; yields each chunk's JSON (OpenAI's chat.completion.chunk).
   * @param {object} body the request (stream is set here)
   * @param {AbortSignal} signal aborting it closes the connection and frees the server's slot
   */
  async* chat(body, signal) {
    const response = await this.request('v1/chat/completions', {
      method: 'POST',
      headers: { 'Content-Type': 'application/json', Accept: 'text/event-stream' },
      body: JSON.stringify({ ...body, stream: true }),
      signal,
    });
    try {
      for await (const [, data] of readEventData(response)) yield data;
    } catch (error) {
      if (error.name === 'AbortError' || error instanceof LlamaError) throw error;
      throw new LlamaError(`The answer broke off: ${error.message}`);
    }
  }

  /** Stream a raw completion (POST /completion, exactly `body`); yields each chunk's data. */
  async* complete(body, controller) {
    for (;;) {
      try {
        const config = { controller, api_url: this.base.replace(/\/$/, ''), api_key: this.apiKey || undefined };
        for await (const chunk of completionStream({ ...body, stream: true }, config)) yield chunk.data;
        return;
      } catch (error) {
        if (error instanceof LlamaError && error.status === 401 && await this.renewKey(true)) continue;
        throw error;
      }
    }
  }
}

/** A sentence for the user about a failed request. */
export function describeError(error) {
  if (!(error instanceof LlamaError)) return String(error?.message ?? error);
  if (error.status === 0) return 'The server cannot be reached. Is it still running?';
  if (error.status === 503 && /loading/i.test(error.message)) return 'The model is still loading. Try again in a moment.';
  if (error.status === 503) {
    const wait = error.retryAfter ? ` Try again in ${Math.ceil(error.retryAfter)} s.` : '';
    return `The server is busy: every slot is in use and the queue is full.${wait}`;
  }
  if (error.status === 401) return 'This server needs an API key.';
  return error.message;
}
