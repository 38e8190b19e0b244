"""Does retrieval help a small model? Held-out perplexity of the bundled ``shakespeare-char`` with and
without kNN-LM retrieval (Khandelwal et al. 2020) from a datastore of the rest of its corpus.

The model was trained on the first 95% of the complete works (``val_fraction = 0.05``); the last 5% (252,864
characters, the end of "The Two Gentlemen of Verona" and on) is held out. The datastore holds the
model's final hidden state at every position of the training 95% (4.8M keys, fp16 in an IVF index),
each with the character that followed. Held-out text is scored in windows of 256 with a stride of 128 (each
scored character sees at least 128 characters of context), with the model alone and with the kNN
distribution mixed in (``genforge.retrieval.knnlm``). lambda and the kNN temperature are chosen on the
first fifth of the scored held-out positions and the reduction is reported on the other four fifths.

    python benchmarks/retrieval_perplexity.py              # ~30 min on 2 cores (the keys are cached)
    python benchmarks/retrieval_perplexity.py --smoke      # seconds: a small store, results/smoke/
"""
from __future__ import annotations

import argparse
import math
import sys
import time
from pathlib import Path

import numpy as np
import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, write_result  # noqa: E402

CACHE = Path.home() / ".cache" / "genforge-bench"


def hidden_and_logprobs(model: torch.nn.Module, ids: torch.Tensor, window: int, stride: int, batch: int,
                        desc: str) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Final hidden states (N, d) fp16, next-token log-probs (N, V) or None, and targets (N,) for every
    position scored: windows of ``window`` tokens every ``stride``; each window scores its last ``stride``
    positions (the first window all of them)."""
    from tqdm.auto import tqdm

    grabbed: list[torch.Tensor] = []
    hook = model.lm_head.register_forward_hook(lambda mod, inp, out: grabbed.append(inp[0]))
    starts = list(range(0, max(1, len(ids) - window), stride))
    hs, lps, ys = [], [], []
    try:
        with torch.no_grad(), tqdm(total=len(starts), desc=desc, unit="window", dynamic_ncols=True) as bar:
            for b in range(0, len(starts), batch):
                group = starts[b:b + batch]
                x = torch.stack([ids[s:s + window] for s in group])
                y = torch.stack([ids[s + 1:s + window + 1] for s in group])
                grabbed.clear()
                logits = model(x)
                h = grabbed[0]
                for row, s in enumerate(group):
                    first = 0 if s == 0 else window - stride
                    hs.append(h[row, first:].to(torch.float16))
                    lps.append(torch.log_softmax(logits[row, first:].float(), -1))
                    ys.append(y[row, first:])
                bar.update(len(group))
    finally:
        hook.remove()
    return torch.cat(hs), torch.cat(lps), torch.cat(ys)


def nll(logprobs: torch.Tensor, targets: torch.Tensor) -> float:
    return float(-logprobs.gather(1, targets[:, None]).mean())


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="shakespeare-char")
    ap.add_argument("--store-chars", type=int, default=0, help="training characters in the store (0 = all)")
    ap.add_argument("--eval-chars", type=int, default=0, help="held-out characters scored (0 = all)")
    ap.add_argument("--k", type=int, default=32)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    args = ap.parse_args()
    if args.smoke:
        args.store_chars, args.eval_chars = 40_000, 4_000
    torch.set_num_threads(args.threads)
    import genforge
    from genforge.data.shakespeare import shakespeare_text
    from genforge.retrieval.knnlm import build_datastore, interpolate, knn_logprobs, search

    tm = genforge.load(args.model)
    model, codec = tm.model.eval(), tm.codec
    window = int(model.max_len)
    text = shakespeare_text()
    cut = int(len(text) * 0.95)
    train, held = text[:cut], text[cut:]
    if args.store_chars:
        train = train[-args.store_chars:]  # the part nearest the held-out text: the same play
    if args.eval_chars:
        held = held[:args.eval_chars]
    t0 = time.time()
    key_file = CACHE / f"knnlm-{args.model}-{len(train)}.npz"
    if key_file.exists() and not args.smoke:
        saved = np.load(key_file)
        keys, values = saved["keys"], saved["values"]
    else:
        ids = torch.tensor(codec.encode(train))
        h, _, y = hidden_and_logprobs(model, ids, window, window, 32, "datastore keys")
        keys, values = h.numpy(), y.numpy().astype(np.int32)
        if not args.smoke:
            CACHE.mkdir(parents=True, exist_ok=True)
            np.savez(key_file, keys=keys, values=values)
    keys_s = time.time() - t0
    t0 = time.time()
    store = build_datastore(keys, values, codec.vocab_size)
    index_s = time.time() - t0
    held_ids = torch.tensor(codec.encode(held))
    hq, lp, yq = hidden_and_logprobs(model, held_ids, window, window // 2, 32, "held-out")
    t0 = time.time()
    parts = [search(store, hq[i:i + 4096], k=args.k) for i in range(0, len(hq), 4096)]
    neighbours = (np.concatenate([d for d, _ in parts]), np.concatenate([i for _, i in parts]))
    search_s = time.time() - t0
    tune = len(yq) // 5
    base_test = nll(lp[tune:], yq[tune:])
    grid = []
    for temp in (3.0, 10.0, 30.0, 100.0, 300.0):
        kt = knn_logprobs(store, neighbours, temperature=temp)
        for lam in (0.05, 0.1, 0.2, 0.3, 0.4, 0.5):
            grid.append({"temperature": temp, "lambda": lam,
                         "tune_nll": nll(interpolate(lp[:tune], kt[:tune], lam), yq[:tune]),
                         "test_nll": nll(interpolate(lp[tune:], kt[tune:], lam), yq[tune:])})
    best = min(grid, key=lambda g: g["tune_nll"])
    ppl_base, ppl_knn = math.exp(base_test), math.exp(best["test_nll"])
    reduction = 1 - ppl_knn / ppl_base
    print(f"held-out ({len(yq) - tune:,} characters scored): perplexity {ppl_base:.4f} alone, {ppl_knn:.4f} with "
          f"kNN-LM retrieval from {len(values):,} keys (lambda {best['lambda']}, T {best['temperature']}): "
          f"{100 * reduction:.1f}% lower")
    write_result("smoke/retrieval_perplexity" if args.smoke else "retrieval_perplexity", {
        "model": args.model, "method": "kNN-LM (Khandelwal et al. 2020), final hidden states, L2, IVF fp16",
        "store_keys": int(len(values)), "held_out_scored": int(len(yq) - tune), "tuning_positions": int(tune),
        "k": args.k, "window": window, "stride": window // 2,
        "perplexity_alone": ppl_base, "perplexity_with_retrieval": ppl_knn, "reduction": reduction,
        "nll_alone": base_test, "nll_with_retrieval": best["test_nll"], "chosen": best, "grid": grid,
        "seconds": {"keys": keys_s, "index": index_s, "search": search_s, "search_per_query_ms":
                    1000 * search_s / max(1, len(hq))},
    }, RESULTS)


if __name__ == "__main__":
    main()
