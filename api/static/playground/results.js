// Results beside the input (a before/after slider over the chosen output, and a card
// per output with its seed, a download link and "use as input"), and the key's history.

import { describeTiming } from "./job.js";

const $ = (id) => document.getElementById(id);

function element(tag, props = {}, children = []) {
  const el = Object.assign(document.createElement(tag), props);
  el.append(...children);
  return el;
}

export class ResultsView {
  // onReuse(dataUri) when an output is chosen as the next input.
  constructor({ onReuse }) {
    this.onReuse = onReuse;
    $("compare-slider").addEventListener("input", () => this.applySlider());
  }

  // Show a COMPLETED job's body (output as base64). `before` is its input, if known.
  show(result, before) {
    const images = result.output.map((b64) => `data:image/png;base64,${b64}`);
    const cards = images.map((src, i) => this.card(result, src, i));
    $("results").replaceChildren(...cards);
    this.compare(images[0], before);
  }

  card(result, src, index) {
    const seed = result.seeds[index] ?? result.seed;
    const name = `inpaint-${result.request_id.slice(0, 8)}-${index}.png`;
    const img = element("img", { src, alt: `Output ${index + 1}` });
    img.addEventListener("click", () => this.compare(src, this.before));
    const download = element("a", { href: src, download: name, className: "button", id: `download-${index}`,
                                     textContent: "Download" });
    const reuse = element("button", { type: "button", className: "use-as-input", id: `use-as-input-${index}`,
                                      textContent: "Use as input" });
    reuse.addEventListener("click", () => this.onReuse(src));
    const meta = element("p", { className: "meta" }, [
      element("span", { className: "seed", textContent: `seed ${seed}` }),
      element("span", { className: "timing", textContent: describeTiming(result) }),
    ]);
    return element("li", { className: "result" }, [img, meta, element("div", { className: "row" }, [download, reuse])]);
  }

  // The chosen output over its input; the slider uncovers one or the other.
  compare(after, before) {
    this.before = before;
    $("result-placeholder").hidden = true;
    $("compare").hidden = false;
    $("compare-after").src = after;
    $("compare-before").hidden = !before;
    if (before) $("compare-before").src = before;
    $("compare-slider").disabled = !before;
    this.fit(after);
    this.applySlider();
  }

  fit(src) {
    const probe = new Image();
    probe.onload = () => {
      const stage = $("result-stage");
      const scale = Math.min(stage.clientWidth / probe.naturalWidth, stage.clientHeight / probe.naturalHeight);
      $("compare").style.width = `${Math.floor(probe.naturalWidth * scale)}px`;
      $("compare").style.height = `${Math.floor(probe.naturalHeight * scale)}px`;
      $("compare").classList.toggle("pixelated", scale >= 2);
    };
    probe.src = src;
  }

  // Left of the line: before; right of it: after.
  applySlider() {
    const at = $("compare-slider").disabled ? 0 : Number($("compare-slider").value);
    $("compare-after").style.clipPath = `inset(0 0 0 ${at}%)`;
    $("compare-line").style.left = `${at}%`;
    $("compare-line").hidden = $("compare-slider").disabled;
  }

  clear() {
    $("results").replaceChildren();
    $("compare").hidden = true;
    $("result-placeholder").hidden = false;
  }
}

// The key's last jobs; onOpen(id) when one is clicked.
export function renderHistory(jobs, onOpen) {
  const items = jobs.map((job) => {
    const when = new Date(job.created_at).toLocaleTimeString();
    const button = element("button", { type: "button", className: "history-item", title: job.request_id }, [
      element("span", { className: "badge", textContent: job.status }),
      element("span", { className: "model", textContent: job.model }),
      element("span", { className: "when", textContent: when }),
      element("code", { textContent: job.request_id.slice(0, 8) }),
    ]);
    button.querySelector(".badge").dataset.status = job.status;
    button.dataset.requestId = job.request_id;
    button.addEventListener("click", () => onOpen(job.request_id));
    return element("li", {}, [button]);
  });
  $("history").replaceChildren(...(items.length ? items : [element("li", { className: "hint",
    textContent: "No jobs yet." })]));
}
