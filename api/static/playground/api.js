// The API client of the playground. Every call sends the key in x-api-key, which is
// why the live events are read with fetch() and a stream reader: EventSource cannot
// send headers.

const KEY_STORAGE = "inpaint-queue.api-key";

export class ApiError extends Error {
  constructor(status, body) {
    super((body && body.error) || `HTTP ${status}`);
    this.status = status;
    this.body = body || {};
  }
}

export function loadKey() {
  return localStorage.getItem(KEY_STORAGE) || "";
}

export function saveKey(key) {
  if (key) localStorage.setItem(KEY_STORAGE, key);
  else localStorage.removeItem(KEY_STORAGE);
}

function headers(extra = {}) {
  return { "x-api-key": loadKey(), ...extra };
}

async function readBody(response) {
  const text = await response.text();
  try {
    return text ? JSON.parse(text) : {};
  } catch {
    return { error: text.slice(0, 200) };
  }
}

// A job's body is the answer even when the HTTP status says FAILED (422) or not done (202).
async function call(method, path, { body, jobBody = false } = {}) {
  const init = { method, headers: headers(body ? { "content-type": "application/json" } : {}) };
  if (body) init.body = JSON.stringify(body);
  const response = await fetch(path, init);
  const data = await readBody(response);
  if (response.ok || (jobBody && data.status)) return data;
  throw new ApiError(response.status, data);
}

export const api = {
  models: () => call("GET", "/v2/models"),
  schedulers: () => call("GET", "/v2/schedulers"),
  submit: (model, body) => call("POST", `/v2/${encodeURIComponent(model)}`, { body }),
  status: (id) => call("GET", `/v2/requests/${encodeURIComponent(id)}/status`, { jobBody: true }),
  result: (id) => call("GET", `/v2/requests/${encodeURIComponent(id)}?base64=true`, { jobBody: true }),
  cancel: (id) => call("POST", `/v2/requests/${encodeURIComponent(id)}/cancel`),
  history: (limit = 20) => call("GET", `/v2/requests?limit=${limit}`),
};

// Split a text/event-stream buffer into complete events; returns [events, rest].
export function parseEvents(buffer) {
  const events = [];
  const blocks = buffer.split(/\r?\n\r?\n/);
  const rest = blocks.pop();
  for (const block of blocks) {
    const event = { event: "message", data: "", id: null };
    const data = [];
    for (const line of block.split(/\r?\n/)) {
      if (!line || line.startsWith(":")) continue;
      const colon = line.indexOf(":");
      const field = colon < 0 ? line : line.slice(0, colon);
      const value = colon < 0 ? "" : line.slice(colon + 1).replace(/^ /, "");
      if (field === "data") data.push(value);
      else if (field === "event") event.event = value;
      else if (field === "id") event.id = value;
    }
    if (data.length) {
      event.data = JSON.parse(data.join("\n"));
      events.push(event);
    }
  }
  return [events, rest];
}

// Follow GET /v2/requests/{id}/events, calling onEvent(name, data) for each event.
// Resolves true once a terminal event (completed/failed) arrived, false if the stream
// ended before one; rejects if it cannot be opened. `signal` aborts it.
export async function streamEvents(id, onEvent, signal, lastEventId = null) {
  const extra = { accept: "text/event-stream" };
  if (lastEventId) extra["Last-Event-ID"] = lastEventId;
  const response = await fetch(`/v2/requests/${encodeURIComponent(id)}/events`, { headers: headers(extra), signal });
  if (!response.ok || !response.body) throw new ApiError(response.status, await readBody(response));
  const reader = response.body.pipeThrough(new TextDecoderStream()).getReader();
  let buffer = "";
  for (;;) {
    const { value, done } = await reader.read();
    if (done) return false;
    let events;
    [events, buffer] = parseEvents(buffer + value);
    for (const { event, data, id: eventId } of events) {
      onEvent(event, data, eventId);
      if (event === "completed" || event === "failed") {
        reader.cancel().catch(() => {});
        return true;
      }
    }
  }
}
