"""Model cards (Mitchell et al. 2019, "Model Cards for Model Reporting"), written from what a checkpoint
records about itself: every checkpoint that training writes and every exported model carries a
``MODEL_CARD.md`` made here, and the bundled models' cards take their watermark, bias and limits
sections from the same functions (``benchmarks/report.py``).

A card says what the model is (architecture, size, codec), what it learned from (data), how (the
recipe and the run: steps, time, device), how well (its metrics), how its output can be recognised
(watermark), what its bias probes found, and what it cannot do. A figure the checkpoint does not record
is said to be missing, never guessed.
"""
from __future__ import annotations

from typing import Any

CARD_FILE = "MODEL_CARD.md"

# what every model of a modality cannot do, whatever its training
LIMITS: dict[str, list[str]] = {
    "text": [
        "It continues text in the style of its training data; it has no knowledge base and states falsehoods as "
        "fluently as facts. Ground answers with `--retrieve` and read the grounding check.",
        "It reproduces the views and biases of its corpus (see Bias).",
        "Characters or tokens outside its codec's vocabulary cannot be given in a prompt.",
    ],
    "molecule": [
        "Generated SMILES can be invalid or chemically implausible; validity and drug-likeness are measured, not "
        "guaranteed. Nothing here predicts safety, synthesis or activity in the lab.",
    ],
    "image": [
        "It draws images like its training set at its resolution and classes only; a prompt outside them maps to "
        "the nearest known class.",
    ],
    "music": [
        "It writes in the styles, keys and meters of its corpus only, on a fixed rhythmic grid; its pieces imitate "
        "the surface statistics of the corpus and can wander harmonically or repeat.",
        "It may reproduce fragments of its training pieces; check before publishing a piece as new.",
    ],
    "speech": [
        "It says only the words it was trained on, in voices like its synthetic training voices (espeak-ng), not "
        "human speech; audio comes from Griffin-Lim and sounds buzzy.",
    ],
}
WATERMARKED = ("text", "molecule")  # modalities whose generations `--watermark` can mark


def _fmt(value: Any) -> str:
    if isinstance(value, float):
        return f"{value:.4g}"
    if isinstance(value, int) and not isinstance(value, bool) and abs(value) >= 10_000:
        return f"{value:,}"
    return str(value)


def _fields(d: dict[str, Any], skip: tuple[str, ...] = ()) -> str:
    return ", ".join(f"{k} {_fmt(v)}" for k, v in d.items() if k not in skip and v not in (None, "", [], {}))


def summary_rows(meta: dict[str, Any]) -> list[str]:
    """The card's table: architecture, size, codec, data, recipe, run and metrics, from ``genforge.json``."""
    model, cfg = meta.get("model", {}), meta.get("config", {})
    codec, data, train = meta.get("codec", {}), cfg.get("data", {}), cfg.get("train", {})
    task, run = cfg.get("task", {}), meta.get("trainer", {})
    rows = ["| | |", "|---|---|",
            f"| architecture | {model.get('kind', 'unknown')}: {_fields(model, ('kind', 'vocab_size')) or '-'} |"]
    if meta.get("parameters"):
        rows.append(f"| parameters | {meta['parameters']:,} ({meta.get('weights_dtype', 'fp32')} weights) |")
    if meta.get("adapter"):
        ad = meta["adapter"]
        rows.append(f"| adapter | {ad.get('kind', 'lora')} rank {ad.get('rank')}, alpha {ad.get('alpha')} on "
                    f"{', '.join(ad.get('targets', []))}; base {ad.get('base')} (weights sha256 "
                    f"{str(ad.get('base_sha256'))[:12]}); this folder holds the adapter alone |")
    vocab = model.get("vocab_size") or codec.get("vocab_size")
    if codec:  # token models; image and speech models have none
        rows.append(f"| codec | {codec.get('kind', 'unknown')}" + (f", {vocab:,} tokens" if vocab else "") + " |")
    skip = () if codec.get("kind") == "smiles" else ("column",)  # only SMILES corpora read a column
    rows.append(f"| data | {_fields(data, skip) or 'not recorded'} |")
    recipe = _fields(train, ("out_dir", "progress", "threads", "keep_checkpoints", "log_interval", "device"))
    kind = task.get("kind", "lm") if isinstance(task, dict) else task
    rows.append(f"| recipe | task {kind}; {recipe or 'not recorded'} |")
    if run:
        secs = run.get("elapsed_s")
        took = f"{secs / 60:.1f} min" if isinstance(secs, int | float) else "time not recorded"
        rows.append(f"| run | {meta.get('step', '?'):,} steps, {took} on {run.get('device', '?')} "
                    f"(world size {run.get('world_size', 1)}, precision {run.get('precision', '?')}, "
                    f"{run.get('nonfinite_steps', 0)} non-finite steps skipped) |")
    elif "step" in meta:
        rows.append(f"| run | {meta['step']:,} steps; time and machine not recorded |")
    metrics = meta.get("metrics") or {}
    rows.append(f"| metrics | {_fields(metrics) or 'none recorded'} |")
    return rows


def watermark_section(settings: dict[str, Any] | None = None) -> str:
    """How this model's output can be recognised: the watermark settings (never the key) or how to turn it on."""
    if not settings:
        return ("Generations are not watermarked unless asked: `genforge generate --watermark` (also `chat`, and "
                "`serve --watermark`) adds a green-list watermark (Kirchenbauer et al. 2023) with the settings "
                "in the watermark settings file, and `genforge detect FILE` tests a text for it.")
    public = {k: v for k, v in settings.items() if "key" not in k.lower() or k == "key_id"}
    return ("Watermarked with a green-list watermark (Kirchenbauer et al. 2023): "
            f"{_fields(public)}. `genforge detect FILE` with the same settings file tests a text for it.")


def bias_section(report_markdown: str | None = None, name: str = "MODEL") -> str:
    """The bias probes' findings, or the command that measures them."""
    if report_markdown:
        return report_markdown.strip()
    return f"Not measured for this model yet: `genforge eval --model {name} --bias` runs the counterfactual probes."


def limits_section(modality: str, extra: list[str] | None = None) -> str:
    return "\n".join(f"- {line}" for line in [*LIMITS.get(modality, []), *(extra or [])]) or "- none recorded"


def card_markdown(meta: dict[str, Any], name: str, *, bias: str | None = None,
                  watermark: dict[str, Any] | None = None, limits: list[str] | None = None) -> str:
    """The whole card of a checkpoint or exported model, from its ``genforge.json`` ``meta``."""
    modality = meta.get("pipeline", "text")
    kind = str(meta.get("model", {}).get("kind", ""))
    lines = [f"# {name}", "",
             f"A {modality} model ({kind}) trained with genforge. This card was "
             "written from the checkpoint's genforge.json when the model was saved.", "",
             *summary_rows(meta), "",
             "## Use", "", "```", f"genforge generate --model {name}", "```", "",
             *(["## Watermark", "", watermark_section(watermark), ""] if modality in WATERMARKED else []),
             *(["## Bias", "", bias_section(bias, name), ""] if modality == "text" else []),
             "## Limits", "", limits_section(modality, limits), ""]
    return "\n".join(lines)
