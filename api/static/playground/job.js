// Following one job: queue position, then step progress, live from the event stream
// (polling the status route if the stream cannot be read), then its results.

import { api, streamEvents } from "./api.js";

const $ = (id) => document.getElementById(id);
const POLL_MS = 1000;
const TERMINAL = new Set(["COMPLETED", "FAILED"]);

// What the page shows of a job, by state.
const VIEW = {
  queued: (d) => ["QUEUED", d.queue_position === 0 ? "next in the queue" : `${d.queue_position} ahead in the queue`],
  progress: (d) => ["PROCESSING", `step ${d.progress.step} / ${d.progress.total}`],
  completed: () => ["COMPLETED", "fetching the images…"],
  failed: (d) => ["FAILED", d.error_code === "cancelled" ? "cancelled" : `${d.error} (${d.error_code})`],
};
const EVENT_OF = { QUEUED: "queued", PROCESSING: "progress", COMPLETED: "completed", FAILED: "failed" };

export class JobTracker {
  // onResult(result) when a job completes; onEnd() when it reaches any terminal state.
  constructor({ onResult, onEnd }) {
    this.onResult = onResult;
    this.onEnd = onEnd;
    this.current = null;
    this.controller = null;
    $("cancel").addEventListener("click", () => this.cancel());
  }

  // Follow job `id`, dropping whichever job was followed before.
  async follow(id) {
    this.controller?.abort();
    const controller = (this.controller = new AbortController());
    this.current = id;
    $("job-panel").hidden = false;
    $("job-id").textContent = id;
    $("cancel").hidden = false;
    $("cancel").disabled = false;
    $("job-status").textContent = "SUBMITTED";
    $("job-status").dataset.status = "";
    $("job-message").textContent = "waiting for the first event…";
    $("progress-bar").removeAttribute("value");
    const onEvent = (name, data) => controller.signal.aborted || this.show(name, data);
    let ended = false;
    try {
      ended = await streamEvents(id, onEvent, controller.signal);
    } catch (error) {
      if (controller.signal.aborted) return;
      console.warn("event stream unavailable, polling instead", error);
    }
    if (ended || controller.signal.aborted) return;
    try {
      await this.poll(id, controller.signal);
    } catch (error) {
      if (!controller.signal.aborted) $("job-message").textContent = `could not follow the job: ${error.message}`;
    }
  }

  async poll(id, signal) {
    while (!signal.aborted) {
      const body = await api.status(id);
      if (signal.aborted) return;
      this.show(EVENT_OF[body.status], body);
      if (TERMINAL.has(body.status)) return;
      await new Promise((resolve) => setTimeout(resolve, POLL_MS));
    }
  }

  show(name, data) {
    const view = VIEW[name];
    if (!view) return;
    const [status, message] = view(data);
    $("job-status").textContent = status;
    $("job-status").dataset.status = status;
    $("job-message").textContent = message;
    const bar = $("progress-bar");
    if (name === "queued") bar.removeAttribute("value");
    if (name === "progress") bar.value = data.progress.percent;
    if (name === "completed") bar.value = 100;
    if (name === "completed" || name === "failed") this.finish(name, data);
  }

  async finish(name, data) {
    $("cancel").hidden = true;
    const id = data.request_id;
    if (name === "completed") {
      try {
        const result = await api.result(id);
        if (id !== this.current) return;
        $("job-message").textContent = describeTiming(result);
        this.onResult(result);
      } catch (error) {
        $("job-message").textContent = `could not fetch the result: ${error.message}`;
      }
    }
    this.onEnd(id);
  }

  async cancel() {
    if (!this.current) return;
    $("cancel").disabled = true;
    $("job-message").textContent = "cancelling…";
    try {
      const answer = await api.cancel(this.current);
      if (!answer.cancelled) $("job-message").textContent = `already ${answer.status.toLowerCase()}`;
    } catch (error) {
      $("job-message").textContent = `could not cancel: ${error.message}`;
      $("cancel").disabled = false;
    }
  }
}

function seconds(value) {
  return value == null ? "?" : `${Number(value).toFixed(2)} s`;
}

// "done in 2.10 s (queue 0.05 s, inference 1.93 s)": the time taken, from the job's own clock.
export function describeTiming(result) {
  const total = (Date.parse(result.finished_at) - Date.parse(result.created_at)) / 1000;
  const { inference_time: inference, queue_time: queue } = result.metrics || {};
  return `done in ${seconds(total)} (queue ${seconds(queue)}, inference ${seconds(inference)})`;
}
