// genforge studio, Images tab: ask an image model for pictures and show each as it arrives.
// One request per image (seed, seed + 1, ...), so the grid fills in while the rest are drawn and Stop
// keeps the pictures already made. Settings and bounds come from /v1/models (genforge_image).

const $ = (id) => document.getElementById(id);

export function setupImages({ headers, httpError, showError, clearError, fmtSeconds, rememberModel }) {
  const ui = { controller: null, models: [] };

  function current() {
    return ui.models.find((m) => m.id === $("image-model").value);
  }

  function fillClasses() {
    const m = current();
    const select = $("image-class");
    const info = m ? m.genforge_image : null;
    select.replaceChildren(new Option("(named by the prompt)", ""));
    for (const [i, name] of (info ? info.classes : []).entries()) select.append(new Option(`${i} · ${name}`, String(i)));
    $("image-model-info").textContent = info
      ? `${info.size}×${info.size} pixels, ${info.channels === 1 ? "grey" : "colour"}; draws: ${info.classes.join(", ")}`
      : "";
    if (info) {
      $("image-steps").max = String(info.limits.steps.maximum);
      $("image-guidance").max = String(info.limits.guidance.maximum);
      $("image-steps").placeholder = String(info.defaults.steps);
      $("image-guidance").placeholder = String(info.defaults.guidance);
    }
  }

  function setBusy(busy) {
    $("image-generate").disabled = busy;
    $("image-stop").disabled = !busy;
    $("image-model").disabled = busy;
    $("image-grid").setAttribute("aria-busy", String(busy));
  }

  function number(id, label, whole) {
    const raw = $(id).value.trim();
    if (raw === "") return undefined;
    const v = Number(raw);
    if (!Number.isFinite(v) || (whole && !Number.isInteger(v))) {
      throw new Error(`${label} must be ${whole ? "a whole number" : "a number"} (or empty for the default).`);
    }
    return v;
  }

  function addPicture(b64, caption) {
    const fig = document.createElement("figure");
    fig.className = "picture";
    fig.dataset.testid = "picture";
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${b64}`;
    img.alt = caption;
    const cap = document.createElement("figcaption");
    cap.textContent = caption;
    fig.append(img, cap);
    $("image-grid").append(fig);
  }

  async function generate() {
    if (ui.controller) return;
    const errBox = $("image-error");
    clearError(errBox);
    let n, steps, guidance, seed;
    try {
      n = number("image-n", "Images", true) ?? 4;
      steps = number("image-steps", "Steps", true);
      guidance = number("image-guidance", "Guidance", false);
      seed = number("image-seed", "Seed", true);
    } catch (e) {
      showError(errBox, e.message);
      return;
    }
    const model = $("image-model").value;
    if (!model) return showError(errBox, "Pick a model first.");
    if (n < 1 || n > 64) return showError(errBox, "Images must be between 1 and 64.");
    const base = seed ?? Math.floor(Math.random() * 2 ** 31);
    const body = { model, prompt: $("image-prompt").value, n: 1, sampler: $("image-sampler").value };
    if (steps !== undefined) body.steps = steps;
    if (guidance !== undefined) body.guidance = guidance;
    if ($("image-class").value !== "") body.genforge_class = Number($("image-class").value);
    $("image-grid").replaceChildren();
    $("image-stats").textContent = "Drawing…";
    const controller = new AbortController();
    ui.controller = controller;
    setBusy(true);
    const t0 = performance.now();
    let made = 0;
    let last = null;
    try {
      for (let i = 0; i < n; i++) {
        const res = await fetch("v1/images/generations", {
          method: "POST", headers: headers(), body: JSON.stringify({ ...body, seed: base + i }), signal: controller.signal,
        });
        if (!res.ok) throw await httpError(res);
        last = await res.json();
        addPicture(last.data[0].b64_json, `seed ${base + i}`);
        made += 1;
        $("image-stats").textContent = `${made} of ${n}…`;
      }
    } catch (e) {
      if (e.name !== "AbortError") showError(errBox, e);
    } finally {
      ui.controller = null;
      setBusy(false);
    }
    const g = last ? last.genforge : null;
    $("image-stats").textContent = made
      ? `${made} image${made === 1 ? "" : "s"} in ${fmtSeconds(performance.now() - t0)}` +
        (g ? ` · ${g.class ? `class ${g.class}` : "unconditional"} · ${g.sampler}, ${g.steps} steps, guidance ${g.guidance}` : "") +
        ` · seeds ${base}–${base + made - 1}` + (made < n ? " · stopped" : "")
      : "";
  }

  $("image-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  $("image-stop").addEventListener("click", () => ui.controller?.abort());
  $("image-model").addEventListener("change", () => {
    fillClasses();
    rememberModel("images", $("image-model").value);
  });

  return {
    /** Called with the image models whenever /v1/models is read. */
    setModels(models, remembered) {
      ui.models = models;
      const select = $("image-model");
      select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
      if (remembered && models.some((m) => m.id === remembered)) select.value = remembered;
      fillClasses();
    },
  };
}
