// The request form: models and schedulers from the live lists, each model's limits on
// its inputs, the body sent to POST /v2/{model}, and API errors shown by their field.

const $ = (id) => document.getElementById(id);

// Wire field (as named in an API error) -> the id of the input it concerns.
export const FIELD_INPUTS = {
  model: "model",
  prompt: "prompt",
  negative_prompt: "negative-prompt",
  num_inference_steps: "steps",
  guidance_scale: "guidance",
  strength: "strength",
  samples: "samples",
  seed: "seed",
  scheduler: "scheduler",
  img_width: "width",
  width: "width",
  img_height: "height",
  height: "height",
  image: "image",
  mask: "mask",
};

// The fields each family uses; erase ignores the others (docs/models.md).
const DIFFUSION_INPUTS = ["prompt", "negative-prompt", "steps", "guidance", "strength", "seed", "scheduler"];
const IGNORED_BY = { erase: DIFFUSION_INPUTS };
// erase needs a prompt on the wire but never reads it.
const ERASE_PROMPT = "erase";

export class RequestForm {
  constructor() {
    this.models = new Map();
    $("model").addEventListener("change", () => this.applyModel());
  }

  get model() {
    return this.models.get($("model").value);
  }

  setModels(models) {
    const select = $("model");
    const previous = select.value;
    select.replaceChildren(...models.map((m) => new Option(`${m.slug} (${m.family})`, m.slug)));
    this.models = new Map(models.map((m) => [m.slug, m]));
    if (this.models.has(previous)) select.value = previous;
    this.applyModel();
  }

  setSchedulers(schedulers) {
    const options = schedulers.filter((s) => s.supported).map((s) => new Option(s.name, s.name));
    $("scheduler").replaceChildren(new Option("model default", ""), ...options);
    this.applyModel();
  }

  // Limits and defaults of the chosen model on the inputs, and which inputs it uses.
  applyModel() {
    const spec = this.model;
    if (!spec) return;
    setRange("steps", spec.steps);
    setRange("guidance", spec.guidance_scale);
    setRange("strength", spec.strength);
    $("samples").max = spec.max_samples;
    $("samples-hint").textContent = `1–${spec.max_samples}`;
    for (const id of ["width", "height"]) {
      $(id).min = 8;
      $(id).max = spec.sizes ? Math.max(...spec.sizes) : spec.max_side;
    }
    $("size-hint").textContent = `Width and height: ${spec.size_rule}. Empty: the input's size if allowed` +
      (spec.default_size ? `, else ${spec.default_size}.` : ".");
    const defaultScheduler = $("scheduler").options[0];
    if (defaultScheduler) defaultScheduler.text = `model default (${spec.default_scheduler})`;
    const ignored = IGNORED_BY[spec.family] || [];
    for (const id of DIFFUSION_INPUTS) $(id).disabled = ignored.includes(id);
    $("model-hint").textContent = ignored.length ? `${spec.slug} ignores the prompt and diffusion settings.` : "";
    this.clearErrors();
  }

  // The body of POST /v2/{model}; fields left empty or unused by the model are not sent.
  body(image, mask) {
    const body = { prompt: $("prompt").disabled ? ERASE_PROMPT : $("prompt").value, image, mask };
    const put = (field, id, parse) => {
      const input = $(id);
      if (!input.disabled && input.value.trim() !== "") body[field] = parse(input.value);
    };
    put("negative_prompt", "negative-prompt", String);
    put("num_inference_steps", "steps", Number);
    put("guidance_scale", "guidance", Number);
    put("strength", "strength", Number);
    put("samples", "samples", Number);
    put("seed", "seed", Number);
    put("scheduler", "scheduler", String);
    put("img_width", "width", Number);
    put("img_height", "height", Number);
    return body;
  }

  // Show each {field, message} next to its input; what has no input goes to `fallback`.
  showErrors(errors, fallback = "form") {
    for (const { field, message } of errors) {
      const id = FIELD_INPUTS[field] || fallback;
      showError(id, message);
      if ($(id)?.closest("#advanced")) $("advanced").open = true;
    }
    const first = errors.map((e) => $(FIELD_INPUTS[e.field] || "")).find((el) => el && el.focus);
    if (first) first.focus();
  }

  clearErrors() {
    for (const el of document.querySelectorAll(".field-error")) {
      if (el.id !== "api-key-error") el.textContent = "";
    }
    for (const el of document.querySelectorAll("[aria-invalid]")) el.removeAttribute("aria-invalid");
  }
}

function setRange(id, range) {
  const input = $(id);
  input.min = range.min;
  input.max = range.max;
  input.value = range.default;
  $(`${id}-hint`).textContent = `${range.min}–${range.max}, default ${range.default}`;
}

export function showError(id, message) {
  const slot = $(`${id}-error`) || $("form-error");
  slot.textContent = message;
  const input = $(id);
  if (input && input !== slot) input.setAttribute("aria-invalid", "true");
}
