// The chat view: conversations (listed, switchable, deletable, kept by the Store), messages
// rendered safely, answers streamed from /v1/chat/completions, stop, copy, regenerate, images.

import { LlamaError, describeError } from './api.js';
import { renderMarkdown } from './markdown.js';
import { titleFrom } from './store.js';
import { autoGrow, copyText, describeTimings, elements, h, iconButton, timingsDetail, toast } from './ui.js';

const MAX_IMAGE_BYTES = 10 * 1024 * 1024;

export class ChatView {
  constructor({ client, store, settings, app }) {
    Object.assign(this, { client, store, settings, app });
    Object.assign(this, elements({
      messages: 'messages', list: 'conversations', input: 'input', form: 'composer', sendButton: 'send',
      stopButton: 'stop', attachButton: 'attach', fileInput: 'file', attachments: 'attachments', empty: 'empty',
    }));
    this.controller = null; // the answer being streamed, if any
    this.pendingImages = [];
    this.conversation = this.store.load(this.store.read('current', '')) ?? this.store.create();
    this.bind();
    this.renderList();
    this.renderMessages();
  }

  bind() {
    this.form.addEventListener('submit', (event) => {
      event.preventDefault();
      this.send();
    });
    // On touch screens there is no Shift+Enter: Enter makes a new line, the button sends.
    const touch = matchMedia('(pointer: coarse)').matches;
    this.input.enterKeyHint = touch ? 'enter' : 'send';
    this.input.addEventListener('keydown', (event) => {
      if (event.key === 'Enter' && !event.shiftKey && !event.isComposing && !touch) {
        event.preventDefault();
        this.send();
      }
    });
    this.input.addEventListener('input', () => autoGrow(this.input));
    this.input.addEventListener('paste', (event) => {
      const files = [...(event.clipboardData?.files ?? [])].filter((f) => f.type.startsWith('image/'));
      if (files.length && !this.attachButton.hidden) {
        event.preventDefault();
        this.addImages(files);
      }
    });
    this.stopButton.addEventListener('click', () => this.stop());
    this.attachButton.addEventListener('click', () => this.fileInput.click());
    this.fileInput.addEventListener('change', () => {
      this.addImages([...this.fileInput.files]);
      this.fileInput.value = '';
    });
  }

  get busy() {
    return this.controller !== null;
  }

  setVision(enabled) {
    this.attachButton.hidden = !enabled;
    if (!enabled) {
      this.pendingImages = [];
      this.renderAttachments();
    }
  }

  // ---- conversations ---------------------------------------------------------------
  renderList() {
    const items = this.store.list().map(({ id, title }) => {
      const open = h('button', {
        className: 'conversation-open', text: title,
        attrs: { type: 'button', title, 'aria-current': id === this.conversation.id ? 'page' : null },
        on: { click: () => this.open(id) },
      });
      const remove = iconButton('trash', `Delete “${title}”`, {
        className: 'icon-button conversation-delete', on: { click: () => this.remove(id) },
      });
      return h('li', { className: id === this.conversation.id ? 'active' : '', attrs: { 'data-id': id } }, [open, remove]);
    });
    this.list.replaceChildren(...items);
    if (!items.length) this.list.append(h('li', { className: 'conversations-empty', text: 'No conversations yet' }));
  }

  open(id) {
    if (this.busy) this.stop();
    const conversation = this.store.load(id);
    if (!conversation) return;
    this.conversation = conversation;
    this.store.write('current', id);
    this.renderList();
    this.renderMessages();
    this.app.showMode('chat');
    this.app.closeSidebar();
    this.input.focus();
  }

  newChat() {
    if (this.busy) this.stop();
    this.conversation = this.store.create();
    this.store.remove('current');
    this.renderList();
    this.renderMessages();
    this.app.showMode('chat');
    this.app.closeSidebar();
    this.input.focus();
  }

  remove(id) {
    if (id === this.conversation.id && this.busy) this.stop();
    const removed = this.store.delete(id);
    if (id === this.conversation.id) {
      this.conversation = this.store.create();
      this.store.remove('current');
      this.renderMessages();
    }
    this.renderList();
    if (removed) {
      toast(`Deleted “${removed.title}”`, {
        action: { label: 'Undo', run: () => { this.store.save(removed); this.renderList(); } },
      });
    }
  }

  persist() {
    const conversation = this.conversation;
    if (!conversation.messages.length) return;
    if (!this.store.save(conversation)) return;
    this.store.write('current', conversation.id);
    this.renderList();
  }

  // ---- messages ----------------------------------------------------------------------
  renderMessages() {
    this.messages.replaceChildren(...this.conversation.messages.map((m, i) => this.messageNode(m, i)));
    this.empty.hidden = this.conversation.messages.length > 0;
    this.app.setTitle(this.conversation.messages.length ? this.conversation.title : 'New chat');
    this.scrollToEnd(true);
  }

  messageNode(message, index) {
    const body = h('div', { className: 'message-body' });
    const meta = h('div', { className: 'message-meta' });
    const node = h('article', { className: `message ${message.role}`, attrs: { 'data-index': index } }, [body, meta]);
    this.fillMessage(node, message, index);
    return node;
  }

  fillMessage(node, message, index) {
    const [body, meta] = node.children;
    if (message.role === 'user') {
      const parts = [h('div', { className: 'user-text', text: message.content })];
      if (message.images?.length) {
        parts.unshift(h('div', { className: 'message-images' }, message.images
          .filter((url) => url.startsWith('data:image/'))
          .map((url) => h('img', { attrs: { src: url, alt: 'attached image' } }))));
      }
      body.replaceChildren(...parts);
    } else {
      body.replaceChildren(renderMarkdown(message.content, { copy: copyText }));
      if (!message.content && this.busy && index === this.conversation.messages.length - 1) {
        body.append(h('span', { className: 'typing', attrs: { 'aria-label': 'thinking' } }, [h('i'), h('i'), h('i')]));
      }
      if (message.error) body.append(h('p', { className: 'message-error', text: message.error }));
    }
    const streaming = this.busy && index === this.conversation.messages.length - 1;
    const items = [];
    if (message.role === 'assistant') {
      const stats = message.stopped ? 'stopped' : describeTimings(message.timings);
      if (stats) items.push(h('span', { className: 'stats', text: stats, attrs: { title: timingsDetail(message.timings) } }));
    }
    if (!streaming) {
      items.push(h('span', { className: 'spacer' }));
      if (message.content) {
        items.push(iconButton('copy', 'Copy message', {
          className: 'icon-button copy-message', on: { click: (e) => copyText(message.content, e.currentTarget) },
        }));
      }
      if (message.role === 'assistant' && index === this.conversation.messages.length - 1) {
        items.push(iconButton('retry', 'Regenerate', { className: 'icon-button regenerate', on: { click: () => this.regenerate() } }));
      }
    }
    meta.replaceChildren(...items);
  }

  scrollToEnd(force = false) {
    const scroller = this.messages.parentElement;
    const near = scroller.scrollHeight - scroller.scrollTop - scroller.clientHeight < 120;
    if (force || near) scroller.scrollTop = scroller.scrollHeight;
  }

  // ---- images (servers with a projector) ----------------------------------------------
  addImages(files) {
    for (const file of files) {
      if (!file.type.startsWith('image/')) continue;
      if (file.size > MAX_IMAGE_BYTES) {
        toast(`${file.name} is larger than 10 MB.`);
        continue;
      }
      const reader = new FileReader();
      reader.onload = () => {
        if (typeof reader.result === 'string' && reader.result.startsWith('data:image/')) {
          this.pendingImages.push(reader.result);
          this.renderAttachments();
        }
      };
      reader.readAsDataURL(file);
    }
  }

  renderAttachments() {
    this.attachments.replaceChildren(...this.pendingImages.map((url, i) => h('div', { className: 'attachment' }, [
      h('img', { attrs: { src: url, alt: `image ${i + 1}` } }),
      iconButton('close', 'Remove image', {
        on: { click: () => { this.pendingImages.splice(i, 1); this.renderAttachments(); } },
      }),
    ])));
    this.attachments.hidden = this.pendingImages.length === 0;
  }

  // ---- generation --------------------------------------------------------------------
  send() {
    const text = this.input.value;
    if (this.busy || (!text.trim() && !this.pendingImages.length)) return;
    const conversation = this.conversation;
    if (!conversation.messages.length) conversation.title = titleFrom(text || 'Image');
    const message = { role: 'user', content: text };
    if (this.pendingImages.length) message.images = this.pendingImages;
    conversation.messages.push(message);
    this.pendingImages = [];
    this.renderAttachments();
    this.input.value = '';
    autoGrow(this.input);
    this.persist();
    this.renderMessages();
    this.generate();
  }

  regenerate() {
    const messages = this.conversation.messages;
    if (this.busy || messages.at(-1)?.role !== 'assistant') return;
    messages.pop();
    this.renderMessages();
    this.generate();
  }

  stop() {
    this.controller?.abort(); // closing the connection frees the server's slot
  }

  requestMessages() {
    const out = [];
    if (this.settings.systemPrompt) out.push({ role: 'system', content: this.settings.systemPrompt });
    for (const m of this.conversation.messages) {
      if (m.role === 'assistant' && (m.error || !m.content)) continue;
      if (m.role === 'user' && m.images?.length) {
        const parts = m.content ? [{ type: 'text', text: m.content }] : [];
        for (const url of m.images) parts.push({ type: 'image_url', image_url: { url } });
        out.push({ role: 'user', content: parts });
      } else {
        out.push({ role: m.role, content: m.content });
      }
    }
    return out;
  }

  async generate() {
    const params = this.settings.paramsOrExplain('chat');
    if (!params) return;
    const conversation = this.conversation;
    const body = { messages: this.requestMessages(), ...params };
    const answer = { role: 'assistant', content: '' };
    conversation.messages.push(answer);
    const index = conversation.messages.length - 1;
    this.controller = new AbortController();
    this.setBusy(true);
    const node = this.messageNode(answer, index);
    this.messages.append(node);
    this.empty.hidden = true;
    this.scrollToEnd(true);
    let frame = 0;
    const paint = () => {
      frame = 0;
      if (conversation !== this.conversation) return;
      this.fillMessage(node, answer, index);
      this.scrollToEnd();
    };
    try {
      for await (const chunk of this.client.chat(body, this.controller.signal)) {
        const delta = chunk.choices?.[0]?.delta?.content;
        if (delta) answer.content += delta;
        if (chunk.timings) answer.timings = chunk.timings;
        if (!frame) frame = requestAnimationFrame(paint); // at most one render per frame
      }
    } catch (error) {
      if (error.name === 'AbortError') {
        answer.stopped = true;
      } else {
        answer.error = describeError(error);
        if (error instanceof LlamaError && (error.status === 0 || error.status === 503)) this.app.checkServer();
      }
    } finally {
      if (frame) cancelAnimationFrame(frame);
      this.controller = null;
      this.setBusy(false);
      if (conversation === this.conversation) {
        this.fillMessage(node, answer, index);
        this.persist();
      } else {
        this.store.save(conversation); // the user switched away meanwhile
      }
    }
  }

  setBusy(busy) {
    this.sendButton.hidden = busy;
    this.stopButton.hidden = !busy;
    this.app.setActivity(busy ? 'Generating…' : null);
    if (!busy) this.input.focus();
  }
}
