/**
 * completion.js: a small client for llamaserver's (and llama.cpp's) `/completion` endpoint,
 * for custom web front ends. The server serves it at `/completion.js` (under --api-prefix),
 * also when --path replaces the built-in page.
 *
 *     import { llama } from '/completion.js'
 *
 *     for await (const chunk of llama('Tell me a joke', { n_predict: 64 })) {
 *       document.write(chunk.data.content)
 *     }
 *
 * Exports: `llama` (async generator, recommended), `llamaEventTarget` (events),
 * `llamaPromise` (the whole text), `llamaComplete` (the seed-era callback form),
 * `llamaModelInfo` (the server's default generation settings), `completionStream` (llama
 * without the defaults), `readEventStream` (the Server-Sent Events reader they share),
 * `readEventData` (its events' JSON, errors thrown) and
 * `LlamaError` (what a failed request throws).
 *
 * Every function takes the same `config`:
 *   - `controller`: an AbortController; `controller.abort()` ends the request, and the
 *     server frees its slot. The generator then ends quietly with the text so far.
 *   - `api_url`: the server's base URL (e.g. `http://127.0.0.1:8080` or `/llama`). Default:
 *     the folder this module was loaded from, so that --api-prefix and cross-origin imports
 *     reach the right server.
 *   - `api_key`: sent as `Authorization: Bearer KEY` (servers started with --api-key).
 *     `params.api_key` is accepted too, as the seed-era module took it; it is not sent in the body.
 *
 * @module completion
 */

/**
 * Options sent unless `params` says otherwise: the seed-era defaults of this module.
 * @type {Readonly<Record<string, unknown>>}
 */
export const paramDefaults = Object.freeze({
  stream: true,
  n_predict: 500,
  temperature: 0.2,
  stop: ['</s>'],
});

/**
 * A request the server refused or failed: HTTP status, the server's error message and type
 * (llama.cpp's `{"error": {"code", "message", "type"}}`), and Retry-After in seconds for 503.
 */
export class LlamaError extends Error {
  /**
   * @param {string} message
   * @param {{status?: number, type?: string, retryAfter?: number|null}} [details]
   */
  constructor(message, { status = 0, type = 'network_error', retryAfter = null } = {}) {
    super(message);
    this.name = 'LlamaError';
    /** HTTP status (0 when the server could not be reached). */
    this.status = status;
    /** llama.cpp's error type, e.g. `authentication_error`, `unavailable_error`. */
    this.type = type;
    /** Seconds to wait before retrying (busy server), or null. */
    this.retryAfter = retryAfter;
  }
}

/**
 * The URL of an endpoint under `config.api_url` (default: this module's folder).
 * @param {string} endpoint e.g. `completion`, `props`
 * @param {{api_url?: string}} [config]
 * @returns {string}
 */
export function endpointUrl(endpoint, config = {}) {
  if (config.api_url) return `${String(config.api_url).replace(/\/+$/, '')}/${endpoint}`;
  return new URL(endpoint, new URL('.', import.meta.url)).href;
}

/**
 * Turn a non-2xx response into a LlamaError carrying the server's message.
 * @param {Response} response
 * @returns {Promise<LlamaError>}
 */
export async function errorFromResponse(response) {
  let message = `${response.status} ${response.statusText}`.trim();
  let type = response.status >= 500 ? 'server_error' : 'invalid_request_error';
  try {
    const body = await response.json();
    const error = body && typeof body.error === 'object' ? body.error : null;
    if (error && typeof error.message === 'string') message = error.message;
    if (error && typeof error.type === 'string') type = error.type;
  } catch {
    // not JSON: the status line says enough
  }
  const retry = Number.parseFloat(response.headers.get('Retry-After') ?? '');
  return new LlamaError(message, {
    status: response.status, type, retryAfter: Number.isFinite(retry) ? retry : null,
  });
}

/**
 * Read a `text/event-stream` body: yields `{event, data, id, retry}` per event, where `data`
 * is the raw text of its `data:` lines (joined with newlines). Comments are skipped.
 * @param {Response} response
 * @returns {AsyncGenerator<{event: string, data: string, id?: string, retry?: number}>}
 */
export async function* readEventStream(response) {
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = '';
  let event = { event: 'message', data: [] };
  let finished = false;
  try {
    for (;;) {
      const { value, done } = await reader.read();
      if (done) {
        finished = true;
        break;
      }
      buffer += value;
      const lines = buffer.split(/\r\n|\r|\n/);
      buffer = lines.pop(); // an incomplete line waits for the next read
      for (const line of lines) {
        if (line === '') {
          if (event.data.length) yield { ...event, data: event.data.join('\n') };
          event = { event: 'message', data: [] };
          continue;
        }
        if (line.startsWith(':')) continue;
        const colon = line.indexOf(':');
        const field = colon < 0 ? line : line.slice(0, colon);
        let text = colon < 0 ? '' : line.slice(colon + 1);
        if (text.startsWith(' ')) text = text.slice(1);
        if (field === 'data') event.data.push(text);
        else if (field === 'event') event.event = text;
        else if (field === 'id') event.id = text;
        else if (field === 'retry' && /^\d+$/.test(text)) event.retry = Number(text);
      }
    }
    if (event.data.length) yield { ...event, data: event.data.join('\n') };
  } finally {
    // a consumer that stops early closes the connection, which frees the server's slot
    if (!finished) await reader.cancel().catch(() => {});
    reader.releaseLock();
  }
}

function isAbort(error) {
  return error && (error.name === 'AbortError' || error.name === 'TimeoutError');
}

/**
 * The JSON data of each event of a stream until `[DONE]`, as `[event, data]` pairs; an event
 * that carries an `error` object is thrown as a LlamaError.
 */
export async function* readEventData(response) {
  for await (const event of readEventStream(response)) {
    if (event.data === '[DONE]') return;
    const data = JSON.parse(event.data);
    if (data.error) {
      throw new LlamaError(data.error.message ?? 'The generation failed.', {
        status: data.error.code ?? 500, type: data.error.type ?? 'server_error',
      });
    }
    yield [event, data];
  }
}

/**
 * Complete `prompt`, streamed. Yields one chunk per server event: `{event, data, id}` where
 * `data` is the parsed JSON (`data.content` is the new text; the last one has `stop: true`,
 * `timings`, `generation_settings`, ... and with `n_probs`, `completion_probabilities`).
 * Returns the whole generated text. Throws a LlamaError when the server refuses the request.
 * `params` are laid over {@link paramDefaults}.
 *
 * @param {string|Array<string|number>} prompt text, or token ids (mixed with strings)
 * @param {Record<string, unknown>} [params] any /completion option (n_predict, temperature, grammar, ...)
 * @param {{controller?: AbortController, api_url?: string, api_key?: string}} [config]
 * @returns {AsyncGenerator<{event: string, data: any, id?: string}, string>}
 */
export async function* llama(prompt, params = {}, config = {}) {
  const { api_key: paramKey, ...options } = params;
  const apiKey = config.api_key ?? paramKey;
  return yield* completionStream({ ...paramDefaults, ...options, prompt }, { ...config, api_key: apiKey });
}

/**
 * The request under {@link llama}: POST `body` to /completion as it is (no defaults added)
 * and yield its chunks the same way. For pages that choose every option themselves.
 *
 * @param {Record<string, unknown>} body the whole /completion request (prompt included)
 * @param {{controller?: AbortController, api_url?: string, api_key?: string}} [config]
 * @returns {AsyncGenerator<{event: string, data: any, id?: string}, string>}
 */
export async function* completionStream(body, config = {}) {
  const controller = config.controller ?? new AbortController();
  const headers = { 'Content-Type': 'application/json', Accept: 'text/event-stream' };
  if (config.api_key) headers.Authorization = `Bearer ${config.api_key}`;
  let content = '';
  let response;
  try {
    response = await fetch(endpointUrl('completion', config), {
      method: 'POST', headers, body: JSON.stringify(body), signal: controller.signal,
    });
  } catch (error) {
    if (isAbort(error)) return content;
    throw new LlamaError(`cannot reach the server: ${error.message}`);
  }
  if (!response.ok) throw await errorFromResponse(response);
  if (!body.stream) {
    const data = await response.json();
    yield { event: 'message', data };
    return data.content ?? '';
  }
  try {
    for await (const [event, data] of readEventData(response)) {
      content += data.content ?? '';
      yield { ...event, data };
      if (data.stop) break;
    }
  } catch (error) {
    if (isAbort(error)) return content;
    if (error instanceof LlamaError) throw error;
    throw new LlamaError(`the stream broke off: ${error.message}`);
  }
  return content;
}

/**
 * Complete `prompt` and report through events: `message` (detail: each chunk's data),
 * `generation_settings`, `timings`, `done` (detail: `{content}`) and `error` (detail: the
 * LlamaError).
 *
 *     const target = llamaEventTarget('Tell me a joke')
 *     target.addEventListener('message', (e) => document.write(e.detail.content))
 *
 * @param {string|Array<string|number>} prompt
 * @param {Record<string, unknown>} [params]
 * @param {{controller?: AbortController, api_url?: string, api_key?: string}} [config]
 * @returns {EventTarget}
 */
export function llamaEventTarget(prompt, params = {}, config = {}) {
  const target = new EventTarget();
  (async () => {
    let content = '';
    try {
      for await (const chunk of llama(prompt, params, config)) {
        const data = chunk.data;
        content += data.content ?? '';
        target.dispatchEvent(new CustomEvent('message', { detail: data }));
        if (data.generation_settings) {
          target.dispatchEvent(new CustomEvent('generation_settings', { detail: data.generation_settings }));
        }
        if (data.timings) target.dispatchEvent(new CustomEvent('timings', { detail: data.timings }));
      }
      target.dispatchEvent(new CustomEvent('done', { detail: { content } }));
    } catch (error) {
      target.dispatchEvent(new CustomEvent('error', { detail: error }));
    }
  })();
  return target;
}

/**
 * Complete `prompt` and resolve with the whole text (rejects with a LlamaError).
 *
 *     const text = await llamaPromise('Tell me a joke', { n_predict: 64 })
 *
 * @param {string|Array<string|number>} prompt
 * @param {Record<string, unknown>} [params]
 * @param {{controller?: AbortController, api_url?: string, api_key?: string}} [config]
 * @returns {Promise<string>}
 */
export async function llamaPromise(prompt, params = {}, config = {}) {
  let content = '';
  for await (const chunk of llama(prompt, params, config)) content += chunk.data.content ?? '';
  return content;
}

/**
 * The seed-era form: `params.prompt` is the prompt, `callback(chunk)` gets every chunk.
 * @deprecated use {@link llama}
 * @param {Record<string, unknown>} params
 * @param {AbortController} [controller]
 * @param {(chunk: {event: string, data: any}) => void} [callback]
 * @returns {Promise<string>} the whole text
 */
export async function llamaComplete(params, controller, callback) {
  const { prompt, ...options } = params;
  let content = '';
  for await (const chunk of llama(prompt, options, { controller })) {
    content += chunk.data.content ?? '';
    if (callback) callback(chunk);
  }
  return content;
}

/**
 * The server's default generation settings (`default_generation_settings` of `GET /props`).
 * @param {{api_url?: string, api_key?: string}} [config]
 * @returns {Promise<Record<string, unknown>>}
 */
export async function llamaModelInfo(config = {}) {
  const headers = config.api_key ? { Authorization: `Bearer ${config.api_key}` } : {};
  const response = await fetch(endpointUrl('props', config), { headers });
  if (!response.ok) throw await errorFromResponse(response);
  return (await response.json()).default_generation_settings;
}
