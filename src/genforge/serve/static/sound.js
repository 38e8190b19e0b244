// genforge studio, Sound tab: ask a music model for a piece and play it, with its piano roll; ask a speech
// model to say words. One request to /v1/audio/music with response_format "json" returns the WAV, the
// MIDI and the piano roll (base64); /v1/audio/speech returns WAV bytes, played from a blob URL. The newest
// result goes on top. Styles, keys, meters and words come from /v1/models (genforge_music,
// genforge_speech). Text is set with textContent; audio and images come from data: and blob: URLs.

const $ = (id) => document.getElementById(id);

export function setupSound({ headers, httpError, showError, clearError, fmtSeconds, rememberModel }) {
  const ui = { busy: false, models: [], speech: [] };

  function current() {
    return ui.models.find((m) => m.id === $("sound-model").value);
  }

  function fill(id, values, first) {
    $(id).replaceChildren(new Option(first, ""), ...values.map((v) => new Option(v, v)));
  }

  function fillInfo() {
    const info = current() ? current().genforge_music : null;
    fill("sound-style", info ? info.styles : [], "(the model's first)");
    if (info && info.styles.length) $("sound-style").value = info.styles[0];
    fill("sound-key", info ? info.keys : [], "(the model chooses)");
    fill("sound-meter", info ? info.meters : [], "(the model chooses)");
    $("sound-model-info").textContent = info
      ? `Music model · styles: ${info.styles.join(", ")} · ${info.keys.length} keys` +
        (info.wav ? "" : " · this server has no synthesizer: MIDI and the piano roll only")
      : "";
    if (info) $("sound-seconds").max = String(info.limits.seconds.maximum);
  }

  function setBusy(busy) {
    ui.busy = busy;
    $("sound-generate").disabled = busy;
    $("sound-model").disabled = busy;
    $("sound-pieces").setAttribute("aria-busy", String(busy));
  }

  function link(href, name, label) {
    const a = document.createElement("a");
    a.href = href;
    a.download = name;
    a.textContent = label;
    return a;
  }

  function addPiece(r) {
    const fig = document.createElement("figure");
    fig.className = "piece";
    fig.dataset.testid = "piece";
    const stem = `piece-${r.seed}`;
    if (r.wav_b64) {
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "auto";
      audio.src = `data:audio/wav;base64,${r.wav_b64}`;
      audio.dataset.testid = "piece-audio";
      fig.append(audio);
    }
    const img = document.createElement("img");
    img.src = `data:image/png;base64,${r.piano_roll_png_b64}`;
    img.alt = `Piano roll: ${r.notes} notes over ${r.seconds.toFixed(1)} seconds`;
    const cap = document.createElement("figcaption");
    cap.textContent = `${r.style}, ${r.key}, ${r.meter} · ${r.seconds.toFixed(1)} s, ${r.notes} notes · seed ${r.seed}`;
    cap.append(link(`data:audio/midi;base64,${r.midi_b64}`, `${stem}.mid`, "MIDI"));
    if (r.wav_b64) cap.append(link(`data:audio/wav;base64,${r.wav_b64}`, `${stem}.wav`, "WAV"));
    fig.append(img, cap);
    $("sound-pieces").prepend(fig);
  }

  async function compose() {
    if (ui.busy) return;
    const errBox = $("sound-error");
    clearError(errBox);
    const model = $("sound-model").value;
    if (!model) return showError(errBox, "Pick a model first.");
    const seconds = Number($("sound-seconds").value || 30);
    const seedRaw = $("sound-seed").value.trim();
    if (!Number.isFinite(seconds) || seconds < 1 || seconds > Number($("sound-seconds").max || 120)) {
      return showError(errBox, `Seconds must be between 1 and ${$("sound-seconds").max || 120}.`);
    }
    if (seedRaw !== "" && !Number.isInteger(Number(seedRaw))) return showError(errBox, "Seed must be a whole number.");
    const body = { model, seconds, response_format: "json" };
    for (const f of ["style", "key", "meter"]) if ($(`sound-${f}`).value) body[f] = $(`sound-${f}`).value;
    if (seedRaw !== "") body.seed = Number(seedRaw);
    setBusy(true);
    $("sound-stats").textContent = "Composing…";
    const t0 = performance.now();
    try {
      const res = await fetch("v1/audio/music", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!res.ok) throw await httpError(res);
      const r = await res.json();
      addPiece(r);
      $("sound-stats").textContent = `${r.seconds.toFixed(1)} s of music in ${fmtSeconds(performance.now() - t0)}` +
        (r.wav_problem ? ` · no WAV: ${r.wav_problem}` : "");
    } catch (e) {
      $("sound-stats").textContent = "";
      showError(errBox, e);
    } finally {
      setBusy(false);
    }
  }

  $("sound-form").addEventListener("submit", (e) => {
    e.preventDefault();
    compose();
  });
  async function speak() {
    if (ui.busy) return;
    const errBox = $("speech-error");
    clearError(errBox);
    const model = $("speech-model").value;
    if (!model) return showError(errBox, "Pick a speech model first.");
    const input = $("speech-input").value.trim();
    if (!input) return showError(errBox, "Type a word the model knows.");
    ui.busy = true;
    $("speech-generate").disabled = true;
    $("speech-stats").textContent = "Speaking…";
    const t0 = performance.now();
    try {
      const body = { model, input, voice: $("speech-voice").value.trim() || "alloy", response_format: "wav" };
      const res = await fetch("v1/audio/speech", { method: "POST", headers: headers(), body: JSON.stringify(body) });
      if (!res.ok) throw await httpError(res);
      const url = URL.createObjectURL(await res.blob());
      const fig = document.createElement("figure");
      fig.className = "piece";
      fig.dataset.testid = "clip";
      const audio = document.createElement("audio");
      audio.controls = true;
      audio.preload = "auto";
      audio.src = url;
      const cap = document.createElement("figcaption");
      cap.textContent = `“${input}” · voice ${body.voice}`;
      cap.append(link(url, `${input.replace(/\W+/g, "-")}.wav`, "WAV"));
      fig.append(audio, cap);
      $("speech-clips").prepend(fig);
      $("speech-stats").textContent = `spoken in ${fmtSeconds(performance.now() - t0)}`;
    } catch (e) {
      $("speech-stats").textContent = "";
      showError(errBox, e);
    } finally {
      ui.busy = false;
      $("speech-generate").disabled = false;
    }
  }

  $("speech-form").addEventListener("submit", (e) => {
    e.preventDefault();
    speak();
  });
  $("speech-model").addEventListener("change", () => {
    const m = ui.speech.find((x) => x.id === $("speech-model").value);
    $("speech-model-info").textContent = m ? `Says: ${m.genforge_speech.words.join(", ")}` : "";
    rememberModel("speech", $("speech-model").value);
  });
  $("sound-model").addEventListener("change", () => {
    fillInfo();
    rememberModel("sound", $("sound-model").value);
  });

  return {
    /** Called with the music and the speech models whenever /v1/models is read. */
    setModels(models, remembered, speechModels = [], rememberedSpeech = null) {
      ui.models = models;
      const select = $("sound-model");
      select.replaceChildren(...models.map((m) => new Option(m.id, m.id)));
      if (remembered && models.some((m) => m.id === remembered)) select.value = remembered;
      $("sound-form").hidden = models.length === 0;
      fillInfo();
      ui.speech = speechModels;
      const sp = $("speech-model");
      sp.replaceChildren(...speechModels.map((m) => new Option(m.id, m.id)));
      if (rememberedSpeech && speechModels.some((m) => m.id === rememberedSpeech)) sp.value = rememberedSpeech;
      $("speech-form").hidden = speechModels.length === 0;
      const m = speechModels.find((x) => x.id === sp.value);
      $("speech-model-info").textContent = m ? `Says: ${m.genforge_speech.words.join(", ")}` : "";
    },
  };
}
