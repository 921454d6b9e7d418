// The playground page: wires the key, the image and mask editor, the request form, the
// job being followed, its results and the history together.

import { ApiError, api, loadKey, saveKey } from "./api.js";
import { MaskEditor } from "./editor.js";
import { RequestForm, showError } from "./form.js";
import { JobTracker } from "./job.js";
import { ResultsView, renderHistory } from "./results.js";

const $ = (id) => document.getElementById(id);
const IMAGE_TYPES = ["image/png", "image/jpeg", "image/webp"];
const inputs = new Map(); // request_id -> the input it was sent with, for before/after

const form = new RequestForm();
const editor = new MaskEditor(
  { stage: $("drop-zone"), frame: $("editor"), image: $("input-image"), canvas: $("mask-canvas"),
    cursor: $("brush-cursor"), placeholder: $("drop-hint") },
  updateEditButtons,
);
const results = new ResultsView({ onReuse: useImage });
const tracker = new JobTracker({
  onResult: (result) => results.show(result, inputs.get(result.request_id)),
  onEnd: () => refreshHistory(),
});

function explain(error) {
  if (error instanceof ApiError && error.status === 401) return `The key was refused: ${error.message}`;
  return error.message;
}

// With the saved key: the live model and scheduler lists, and the history.
async function connect() {
  $("api-key-error").textContent = "";
  $("api-key").removeAttribute("aria-invalid");
  if (!loadKey()) {
    showError("api-key", "Enter an API key: every API call sends it (x-api-key).");
    return;
  }
  try {
    const [{ schedulers }, { models }] = await Promise.all([api.schedulers(), api.models()]);
    form.setSchedulers(schedulers);
    form.setModels(models);
    await refreshHistory();
  } catch (error) {
    showError("api-key", explain(error));
  }
}

async function refreshHistory() {
  if (!loadKey()) return;
  try {
    const { requests } = await api.history(20);
    renderHistory(requests, openJob);
  } catch (error) {
    console.warn("could not list the history", error);
  }
}

function openJob(id) {
  results.clear();
  tracker.follow(id);
}

async function useImage(src) {
  $("image-error").textContent = "";
  $("mask-error").textContent = "";
  try {
    await editor.setImage(src);
    $("input-size").textContent = `${editor.width}×${editor.height}`;
  } catch (error) {
    showError("image", `The image ${error.message}.`);
  }
}

function loadImageFile(file) {
  if (!file) return;
  if (!IMAGE_TYPES.includes(file.type)) {
    showError("image", `${file.name} is not a PNG, JPEG or WebP image.`);
    return;
  }
  const reader = new FileReader();
  reader.onload = () => useImage(reader.result);
  reader.readAsDataURL(file);
}

function loadImageUrl(url) {
  url = url.trim();
  if (/^https?:\/\//i.test(url)) useImage(url);
  else showError("image", "Give an http(s) URL.");
}

function updateEditButtons() {
  $("undo").disabled = !editor.undoStack.length;
  $("redo").disabled = !editor.redoStack.length;
  $("clear-mask").disabled = $("invert-mask").disabled = !editor.hasImage;
  if (editor.hasImage && !editor.isEmpty()) $("mask-error").textContent = "";
}

function showApiError(error) {
  if (!(error instanceof ApiError)) return showError("form", `The request failed: ${error.message}`);
  if (error.status === 400 && Array.isArray(error.body.errors)) return form.showErrors(error.body.errors);
  if (error.status === 401) return showError("api-key", explain(error));
  if (error.status === 404) return showError("model", error.message);
  showError("form", error.message);
}

async function submit(event) {
  event.preventDefault();
  form.clearErrors();
  if (!loadKey()) return showError("api-key", "Enter an API key first.");
  if (!form.model) return showError("model", "No model to choose: save a key that can list them.");
  if (!editor.hasImage) return showError("image", "Load an image first.");
  if (editor.isEmpty()) return showError("mask", "Paint over the area to repaint, or upload a mask.");
  const input = editor.source;
  $("submit").disabled = true;
  try {
    const answer = await api.submit(form.model.slug, form.body(input, editor.toDataUri()));
    inputs.set(answer.request_id, input);
    results.clear();
    tracker.follow(answer.request_id);
    refreshHistory();
  } catch (error) {
    showApiError(error);
  } finally {
    $("submit").disabled = false;
  }
}

function bindInputs() {
  $("image-file").addEventListener("change", (e) => {
    loadImageFile(e.target.files[0]);
    e.target.value = "";
  });
  $("load-url").addEventListener("click", () => loadImageUrl($("image-url").value));
  $("image-url").addEventListener("keydown", (e) => {
    if (e.key === "Enter") {
      e.preventDefault();
      loadImageUrl($("image-url").value);
    }
  });
  const zone = $("drop-zone");
  for (const name of ["dragenter", "dragover"]) {
    zone.addEventListener(name, (e) => {
      e.preventDefault();
      zone.classList.add("dropping");
    });
  }
  zone.addEventListener("dragleave", () => zone.classList.remove("dropping"));
  zone.addEventListener("drop", (e) => {
    e.preventDefault();
    zone.classList.remove("dropping");
    const file = e.dataTransfer.files[0];
    if (file) loadImageFile(file);
    else loadImageUrl(e.dataTransfer.getData("text/uri-list").split("\n")[0] || e.dataTransfer.getData("text/plain"));
  });
  $("mask-file").addEventListener("change", async (e) => {
    const file = e.target.files[0];
    e.target.value = "";
    if (!file) return;
    if (!editor.hasImage) return showError("mask", "Load the image first, then its mask.");
    try {
      await editor.loadMask(file);
    } catch {
      showError("mask", `${file.name} could not be read as an image.`);
    }
  });
}

function bindTools() {
  for (const radio of document.querySelectorAll("input[name=tool]")) {
    radio.addEventListener("change", () => (editor.tool = radio.value));
  }
  const setSize = (size) => {
    editor.size = Math.max(2, Math.min(160, size));
    $("brush-size").value = editor.size;
    $("brush-size-value").textContent = editor.size;
  };
  $("brush-size").addEventListener("input", (e) => setSize(Number(e.target.value)));
  $("undo").addEventListener("click", () => editor.undo());
  $("redo").addEventListener("click", () => editor.redo());
  $("clear-mask").addEventListener("click", () => editor.clear());
  $("invert-mask").addEventListener("click", () => editor.invert());
  document.addEventListener("keydown", (e) => {
    if (e.target.matches("textarea, select, input:not([type=range]):not([type=radio])")) return;
    const key = e.key.toLowerCase();
    if ((e.ctrlKey || e.metaKey) && key === "z") e.shiftKey ? editor.redo() : editor.undo();
    else if ((e.ctrlKey || e.metaKey) && key === "y") editor.redo();
    else if (key === "[" || key === "]") setSize(editor.size + (key === "]" ? 5 : -5));
    else return;
    e.preventDefault();
  });
}

function bindKey() {
  $("api-key").value = loadKey();
  const save = () => {
    saveKey($("api-key").value.trim());
    connect();
  };
  $("save-key").addEventListener("click", save);
  $("api-key").addEventListener("keydown", (e) => e.key === "Enter" && save());
}

bindKey();
bindInputs();
bindTools();
$("request-form").addEventListener("submit", submit);
$("history-refresh").addEventListener("click", refreshHistory);
updateEditButtons();
connect();
