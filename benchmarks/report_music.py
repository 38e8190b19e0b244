"""The music parts of README.md and the bach-chorales model card, built from benchmarks/results/*.json and the
bundled model's genforge.json (see report.py)."""
from __future__ import annotations

import report_format as fmt  # noqa: E402  (the script's own folder is on sys.path)

NAME = "bach-chorales"
CARD = f"src/genforge/bundled/{NAME}/MODEL_CARD.md"
EVAL = "music_chorales"  # genforge eval --model bach-chorales --json benchmarks/results/music_chorales.json


def eval_lines() -> list[str]:
    ev = fmt.load(EVAL)
    if not ev:
        return [f"(not measured yet: `genforge eval --model {NAME} --json benchmarks/results/{EVAL}.json`)"]
    g, h, vs, fl = ev["generated"], ev["held_out"], ev["vs_held_out"], ev["floor"]
    pcd, floor = vs["pitch_class_distance"], fl["pitch_class_distance"]
    in_key = abs(g["in_key"] - h["in_key"])
    rows = [
        f"`genforge eval --model {ev['model']}`: {ev['samples']} generated pieces of 30 seconds (seed {ev['seed']}), "
        f"each asking for the style, key and meter of one of the {ev['held_out_pieces']} held-out chorales, "
        f"against those chorales; the floor is the same measure between two halves of the held-out set.",
        "",
        "| | generated | held-out | distance to held-out | floor |",
        "|---|---:|---:|---:|---:|",
        f"| pitch-class histogram (L1, tonic-relative) | | | {pcd:.4f} | {floor:.4f} |",
        f"| note durations (total variation) | | | {vs['duration_distance']:.4f} | {fl['duration_distance']:.4f} |",
        f"| in-key ratio | {g['in_key']:.3f} | {h['in_key']:.3f} | {vs['in_key_difference']:+.3f} | "
        f"{fl['in_key_difference']:+.3f} |",
        f"| polyphony (notes sounding) | {g['polyphony']:.2f} | {h['polyphony']:.2f} | "
        f"{vs['polyphony_difference']:+.2f} | {fl['polyphony_difference']:+.2f} |",
        f"| repetition (repeated 4-note figures) | {g['repetition']:.3f} | {h['repetition']:.3f} | "
        f"{vs['repetition_difference']:+.3f} | {fl['repetition_difference']:+.3f} |",
        "",
        f"- Held-out negative log-likelihood: {ev['nll_per_token']:.4f} nats per token, {ev['nll_per_note']:.3f} "
        f"nats per note. Targets: pitch-class distance <= 2x the floor ({pcd / floor:.2f}x: "
        f"{'met' if pcd <= 2 * floor else 'not met'}); in-key ratio within 0.05 of the held-out set "
        f"({in_key:.3f}: {'met' if in_key <= 0.05 else 'not met'}). Sampling the {ev['samples']} pieces took "
        f"{ev['sampling_s']:.0f} s.",
    ]
    return rows


def speed_lines() -> list[str]:
    sp = fmt.load("music_speed")
    if not sp or sp["config"].get("smoke"):
        return []
    md = sp["median"]
    wav = f", WAV {md['wav_s']:.2f} s" if md.get("wav_s") is not None else " (no synthesizer: no WAV)"
    return [f"- Time to compose a {sp['config']['seconds']:.0f}-second chorale on the CPU (`music_speed.py`, medians "
            f"of {sp['config']['rounds']} runs): {md['total_s']:.2f} s in all, for {md['music_s']:.1f} s of music "
            f"(real-time factor {md['real_time_factor']:.1f}): {md['tokens']:.0f} event tokens in "
            f"{md['tokens_s']:.2f} s, MIDI {md['midi_s'] * 1e3:.0f} ms{wav}. The token loop runs "
            f"{fmt.spread(sp['speedup_vs_nanogpt_crop'])} as fast as nanoGPT's crop-and-recompute `generate` on "
            f"the same weights ({fmt.machine(sp.get('machine'))}). {md.get('ended_early', 0)} of "
            f"{len(sp['runs'])} seeds ended their piece early (the model's end token, as short as "
            f"{min(r['music_s'] for r in sp['runs']):.0f} s) and are left out of these medians."]


def music_section() -> str:
    lines = eval_lines() + speed_lines()
    return "\n".join(fmt.wrap(x) if x.startswith("- ") or (x and not x.startswith("|")) else x for x in lines)


def bundled_line() -> str:
    meta = fmt.meta(NAME)
    m = meta["model"]
    size = (fmt.ROOT / "src" / "genforge" / "bundled" / NAME / "model.safetensors").stat().st_size
    return (f"- `{NAME}` ([model card]({CARD})): a {m['n_layer']}-layer Transformer (width {m['n_embd']}, "
            f"{m['block_size']} tokens of context) over music event tokens, {meta['parameters'] / 1e6:.2f} M "
            f"parameters, {size / 1e6:.1f} MB in {meta['weights_dtype']}, trained by `configs/{NAME}.toml` on the "
            f"Bach chorales on a 2-core CPU; validation loss {meta['metrics']['val_loss']:.3f} nats/token on the "
            "held-out chorales.")


def card_section() -> str:
    meta = fmt.meta(NAME)
    m, tr, data = meta["model"], meta["config"]["train"], meta["config"]["data"]
    tokens = tr["max_steps"] * tr["batch_size"] * m["block_size"]
    rows = ["| | |", "|---|---|",
            f"| data | the 371 Bach chorales of music21's corpus (four voices), a tenth held out by name; each "
            f"training chorale also transposed {data['augment']} ways |",
            f"| recipe | `configs/{NAME}.toml`: AdamW (lr {fmt.num(tr['lr'])}, cosine to {fmt.num(tr['min_lr'])}), "
            f"batch {tr['batch_size']} x {m['block_size']} tokens, {tr['max_steps']:,} steps "
            f"({tokens / 1e6:.1f} M tokens) |",
            f"| validation loss | {meta['metrics']['val_loss']:.4f} nats/token (held-out chorales) at step "
            f"{meta['step']:,} |",
            "| limits | chorale style only; four-part textures; it knows the keys and meters of the chorales "
            "(and their transpositions); rhythm on a grid of 12 steps a quarter note |"]
    return "\n".join(rows + ["", *eval_lines(), *speed_lines()])


SPEECH_CARD = "src/genforge/bundled/spoken-words/MODEL_CARD.md"
SPEECH_EVAL = "speech_words"  # genforge eval --model spoken-words --json benchmarks/results/speech_words.json


def speech_section() -> str:
    ev = fmt.load(SPEECH_EVAL)
    if not ev:
        return (f"(not measured yet: `genforge eval --model spoken-words --json "
                f"benchmarks/results/{SPEECH_EVAL}.json`)")
    g, s, fl, c, st = ev["generated"], ev["generated_spectrograms"], ev["floor"], ev["classifier"], ev["settings"]
    acc = g["conditional_accuracy"]
    lines = [
        f"`genforge eval --model {ev['model']}`: {st['n']} generated clips ({st['sampler']}, {st['steps']} steps, "
        f"guidance {st['guidance']:g}, seed {ev['seed']}), judged by a word classifier trained on "
        f"{c['train_clips']:,} clips of {c['voices']} held-out voices (its accuracy on the generator's "
        f"training voices: {c['test_accuracy']:.3f}):",
        "",
        "| | conditional accuracy | Frechet distance |",
        "|---|---:|---:|",
        f"| generated, heard from their audio (Griffin-Lim) | {acc:.3f} | {g['fd']:.3f} |",
        f"| generated spectrograms, before audio | {s['conditional_accuracy']:.3f} | {s['fd']:.3f} |",
        f"| real clips through the same round trip (floor) | {fl['conditional_accuracy']:.3f} | {fl['fd']:.3f} |",
        "",
        f"- Target: conditional accuracy >= 0.8 ({acc:.3f}: {'met' if acc >= 0.8 else 'not met'}). Distances "
        f"are to {ev['reference_clips']:,} other real clips of the training voices. Generation ran at a "
        f"real-time factor of {ev['real_time_factor']:.2f} ({ev['audio_s']:.0f} s of audio in "
        f"{ev['generation_s']:.0f} s, spectrograms and Griffin-Lim, on the CPU).",
    ]
    return "\n".join(fmt.wrap(x) if x.startswith("- ") or (x and not x.startswith("|")) else x for x in lines)


def speech_bundled_line() -> str:
    meta = fmt.meta("spoken-words")
    m = meta["model"]
    size = (fmt.ROOT / "src" / "genforge" / "bundled" / "spoken-words" / "model.safetensors").stat().st_size
    return (f"- `spoken-words` ([model card]({SPEECH_CARD})): a class-conditional diffusion UNet (widths "
            f"{m['base_channels']} x {m['channel_mult']}) on {m['image_size']}x{m['image_size']} log-mel "
            f"spectrograms of {m['num_classes']} words, {meta['parameters'] / 1e6:.2f} M parameters, "
            f"{size / 1e6:.1f} MB in {meta['weights_dtype']}, trained by `configs/spoken-words.toml` on a 2-core "
            "CPU; audio by Griffin-Lim.")
