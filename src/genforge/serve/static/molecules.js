// genforge studio, Molecules tab: ask a molecule model for SMILES and draw each with its scores.
// Molecules come from /v1/completions (each choice carries genforge_molecule: the whole SMILES, its
// validity, QED, logP, SA, weight) in requests of up to CHUNK, so the grid fills in while the rest are
// made and Stop keeps what is there; choice i of a seeded request uses seed + i, so chunks give the same
// molecules one big request would. Drawings are RDKit's SVG from /v1/molecules/draw, shown as <img>
// (an image never runs script), and every piece of text is set with textContent.

const $ = (id) => document.getElementById(id);
const CHUNK = 8; // molecules per request (the server's default --max-n)
const SCORES = [
  ["qed", "QED", 2, "drug-likeness, 0–1 (higher is more drug-like)"],
  ["logp", "logP", 2, "octanol–water partition coefficient (lipophilicity)"],
  ["sa", "SA", 2, "synthetic accessibility, 1 (easy) – 10 (hard)"],
  ["weight", "MW", 0, "molecular weight (g/mol)"],
];

export function setupMolecules({ headers, httpError, showError, clearError, fmtSeconds, rememberModel }) {
  const ui = { controller: null, models: [] };

  function current() {
    return ui.models.find((m) => m.id === $("molecule-model").value);
  }

  function fillInfo() {
    const m = current();
    const info = m ? m.genforge_molecule : null;
    $("molecule-model-info").textContent = info
      ? `SMILES model · ${info.vocab_size} tokens · up to ${info.defaults.max_tokens} tokens per molecule`
      : "";
    const sampling = m && m.genforge_sampling;
    const t = $("molecule-temperature");
    if (sampling && sampling.defaults) t.placeholder = String(sampling.defaults.temperature);
    const lim = sampling && sampling.limits ? sampling.limits.temperature : null;
    if (lim && lim.maximum !== undefined) t.max = String(lim.maximum);
  }

  function setBusy(busy) {
    $("molecule-generate").disabled = busy;
    $("molecule-stop").disabled = !busy;
    $("molecule-model").disabled = busy;
    $("molecule-grid").setAttribute("aria-busy", String(busy));
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

  async function post(url, body, signal) {
    const res = await fetch(url, { method: "POST", headers: headers(), body: JSON.stringify(body), signal });
    if (!res.ok) throw await httpError(res);
    return res.json();
  }

  function addCard(mol, svg, seed) {
    const fig = document.createElement("figure");
    fig.className = mol.valid ? "molecule" : "molecule invalid";
    fig.dataset.testid = "molecule";
    fig.title = `seed ${seed}`;
    const drawing = document.createElement("div");
    drawing.className = "drawing";
    if (svg) {
      const img = document.createElement("img");
      img.src = `data:image/svg+xml;charset=utf-8,${encodeURIComponent(svg)}`;
      img.alt = `Structure of ${mol.smiles}`;
      drawing.append(img);
    } else drawing.textContent = mol.valid ? "(no drawing)" : "Not a valid molecule";
    const cap = document.createElement("figcaption");
    const code = document.createElement("code");
    code.className = "smiles";
    code.textContent = mol.smiles || "(empty)";
    cap.append(code);
    if (mol.valid) {
      const dl = document.createElement("dl");
      dl.className = "scores";
      for (const [key, label, digits, help] of SCORES) {
        if (typeof mol[key] !== "number") continue;
        const item = document.createElement("div");
        item.title = help;
        const dt = document.createElement("dt");
        dt.textContent = label;
        const dd = document.createElement("dd");
        dd.textContent = mol[key].toFixed(digits);
        dd.dataset.score = key;
        item.append(dt, dd);
        dl.append(item);
      }
      cap.append(dl);
    }
    fig.append(drawing, cap);
    $("molecule-grid").append(fig);
  }

  async function generate() {
    if (ui.controller) return;
    const errBox = $("molecule-error");
    clearError(errBox);
    let n, temperature, seed;
    try {
      n = number("molecule-n", "Molecules", true) ?? 12;
      temperature = number("molecule-temperature", "Temperature", false);
      seed = number("molecule-seed", "Seed", true);
    } catch (e) {
      showError(errBox, e.message);
      return;
    }
    const model = $("molecule-model").value;
    if (!model) return showError(errBox, "Pick a model first.");
    if (n < 1 || n > 64) return showError(errBox, "Molecules must be between 1 and 64.");
    const base = seed ?? Math.floor(Math.random() * 2 ** 31);
    const body = { model, prompt: $("molecule-prompt").value.trim() };
    if (temperature !== undefined) body.temperature = temperature;
    $("molecule-grid").replaceChildren();
    $("molecule-stats").textContent = "Generating…";
    const controller = new AbortController();
    ui.controller = controller;
    setBusy(true);
    const t0 = performance.now();
    let made = 0;
    let valid = 0;
    try {
      while (made < n) {
        const k = Math.min(CHUNK, n - made);
        const res = await post("v1/completions", { ...body, n: k, seed: base + made }, controller.signal);
        const mols = res.choices.map((c) => c.genforge_molecule || { smiles: body.prompt + c.text, valid: false });
        const good = mols.filter((m) => m.valid).map((m) => m.smiles);
        const svgs = new Map();
        if (good.length) {
          const drawn = await post("v1/molecules/draw", { smiles: good }, controller.signal);
          for (const d of drawn.data) if (d.svg) svgs.set(d.smiles, d.svg);
        }
        mols.forEach((m, i) => addCard(m, svgs.get(m.smiles), base + made + i));
        made += k;
        valid += good.length;
        $("molecule-stats").textContent = `${made} of ${n}…`;
      }
    } catch (e) {
      if (e.name !== "AbortError") showError(errBox, e);
    } finally {
      ui.controller = null;
      setBusy(false);
    }
    $("molecule-stats").textContent = made
      ? `${made} molecule${made === 1 ? "" : "s"}, ${valid} valid (${Math.round((100 * valid) / made)}%) in ` +
        `${fmtSeconds(performance.now() - t0)} · ${body.prompt ? `from ${body.prompt}` : "from scratch"}` +
        ` · seeds ${base}–${base + made - 1}` + (made < n ? " · stopped" : "")
      : "";
  }

  $("molecule-form").addEventListener("submit", (e) => {
    e.preventDefault();
    generate();
  });
  $("molecule-stop").addEventListener("click", () => ui.controller?.abort());
  $("molecule-model").addEventListener("change", () => {
    fillInfo();
    rememberModel("molecules", $("molecule-model").value);
  });

  return {
    /** Called with the molecule models whenever /v1/models is read. */
    setModels(models, remembered) {
      ui.models = models;
      const select = $("molecule-model");
      select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
      if (remembered && models.some((m) => m.id === remembered)) select.value = remembered;
      fillInfo();
    },
  };
}
