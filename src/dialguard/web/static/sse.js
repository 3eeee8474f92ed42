// Server-sent events over fetch(): EventSource cannot send an Authorization header, and a token in a
// URL would land in logs and history. A small parser of the text/event-stream format (WHATWG HTML,
// "Server-sent events"), and a stream that reconnects with Last-Event-ID.

import { errorOf, session } from './api.js';

/** Feed it text as it arrives; it calls onEvent({event, data, id, empty}) at each blank line: `id` is the
 *  last event ID so far, `empty` an event with no data (which only moves the ID on). */
export class SseParser {
  constructor(onEvent) {
    this.onEvent = onEvent;
    this.buffer = '';
    this.reset();
    this.lastId = null;
    this.retry = null;
  }

  reset() {
    this.event = '';
    this.data = [];
    this.hasData = false;
  }

  push(text) {
    this.buffer += text;
    let start = 0;
    for (;;) {
      const cr = this.buffer.indexOf('\r', start);
      const lf = this.buffer.indexOf('\n', start);
      let end = cr === -1 ? lf : lf === -1 ? cr : Math.min(cr, lf);
      if (end === -1) break;
      // A CR at the very end may be the first half of CRLF: wait for the next chunk to tell.
      if (end === cr && end === this.buffer.length - 1) break;
      const line = this.buffer.slice(start, end);
      if (end === cr && this.buffer[end + 1] === '\n') end += 1;
      start = end + 1;
      this.line(line);
    }
    this.buffer = this.buffer.slice(start);
  }

  line(line) {
    if (line === '') {
      this.dispatch();
      return;
    }
    if (line.startsWith(':')) return; // a comment: the server's heartbeat
    const colon = line.indexOf(':');
    const field = colon === -1 ? line : line.slice(0, colon);
    let value = colon === -1 ? '' : line.slice(colon + 1);
    if (value.startsWith(' ')) value = value.slice(1);
    if (field === 'data') {
      this.data.push(value);
      this.hasData = true;
    } else if (field === 'event') {
      this.event = value;
    } else if (field === 'id' && !value.includes('\0')) {
      this.lastId = value;
    } else if (field === 'retry' && /^\d+$/.test(value)) {
      this.retry = Number(value);
    }
  }

  dispatch() {
    const event = this.event || 'message';
    this.onEvent({ event, data: this.data.join('\n'), id: this.lastId, empty: !this.hasData });
    this.reset();
  }
}

const QUIET_LIMIT = 45000; // ms without a byte (heartbeats included) before the link is taken for dead
const BACKOFF_MAX = 15000;

/**
 * GET an event stream and keep it open: onEvent({event, data, id}) per event; onState(state, detail) with
 * 'connecting', 'live', 'retrying' (detail: why), 'absent' (the gateway has no such route), 'closed'.
 * After a drop, or an `overflow` event (the server could not keep up with this reader), it reconnects
 * with Last-Event-ID so that nothing in between is lost.
 */
export class EventStream {
  constructor(path, { onEvent, onState }) {
    this.path = path;
    this.onEvent = onEvent;
    this.onState = onState ?? (() => {});
    this.lastId = null;
    this.stopped = true;
  }

  start() {
    if (!this.stopped) return;
    this.stopped = false;
    this.run();
  }

  stop() {
    this.stopped = true;
    this.controller?.abort();
    this.onState('closed');
  }

  async run() {
    let backoff = 1000;
    while (!this.stopped) {
      this.onState('connecting');
      const why = await this.once();
      if (this.stopped || why === null) return;
      if (why === 'overflow') {
        backoff = 1000;
        continue; // at once: the events since lastId are waiting on the server
      }
      this.onState('retrying', why);
      await new Promise((resolve) => setTimeout(resolve, backoff));
      backoff = Math.min(backoff * 2, BACKOFF_MAX);
    }
  }

  /** One connection; resolves with why it ended ('overflow', or a message), or null to stop for good. */
  async once() {
    const controller = new AbortController();
    this.controller = controller;
    const headers = { Accept: 'text/event-stream', Authorization: `Bearer ${session()?.token ?? ''}` };
    if (this.lastId !== null) headers['Last-Event-ID'] = this.lastId;
    let quiet;
    const watch = () => {
      clearTimeout(quiet);
      quiet = setTimeout(() => controller.abort(), QUIET_LIMIT);
    };
    let ended = 'the stream ended';
    try {
      watch();
      const response = await fetch(this.path, { headers, signal: controller.signal, cache: 'no-store', credentials: 'omit' });
      if (!response.ok) {
        const error = await errorOf(response);
        if (response.status === 401) {
          window.dispatchEvent(new CustomEvent('dialguard:unauthorized', { detail: error.message }));
          return null;
        }
        if (error.absent) {
          this.onState('absent', error.message);
          return null;
        }
        return error.message;
      }
      this.onState('live');
      const parser = new SseParser((event) => {
        if (event.id !== null) this.lastId = event.id;
        if (event.event === 'overflow') {
          ended = 'overflow';
          controller.abort();
        } else if (!event.empty) {
          this.onEvent(event);
        }
      });
      const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
      for (;;) {
        const { value, done } = await reader.read();
        if (done) break;
        watch();
        parser.push(value);
      }
    } catch (err) {
      if (ended !== 'overflow') ended = controller.signal.aborted && !this.stopped ? 'no heartbeat from the gateway' : err.message;
    } finally {
      clearTimeout(quiet);
    }
    return ended;
  }
}
