"""Molecule sampling speed: genforge's token loop against a plain PyTorch LSTM loop, same weights, same process.

Ours: ``MoleculeModel.sample`` (``sampling.tokens.sample_sequences`` over the shared token loop: prefill,
state, ``sample_next``, end at ``<eos>``). Peer: the loop REINVENT (Olivecrona et al. 2017) and the MOSES
CharRNN use, written out in plain PyTorch: embedding -> ``nn.LSTM`` step -> linear -> softmax ->
``torch.multinomial``, batch 128, stopping when every row has emitted the end token. The peer is built
from our model's own weights, so both sample the same distribution (checked: the mean SMILES length of
both agrees within a few percent).

Rounds alternate (ours, peer, peer, ours, ...); the ratio is the median of per-round ratios of molecules/s.

    python benchmarks/molecule_sampling.py                         # the bundled moses-smiles, ~2 minutes
    python benchmarks/molecule_sampling.py --model runs/moses-smiles
    python benchmarks/molecule_sampling.py --smoke                 # seconds, results/smoke/
"""
from __future__ import annotations

import argparse
import sys
import time
from pathlib import Path

import torch

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402


class PlainLSTMSampler(torch.nn.Module):
    """The REINVENT-shaped sampler: our RNNLM's weights in a bare embedding/LSTM/linear loop."""

    def __init__(self, rnnlm: torch.nn.Module) -> None:
        super().__init__()
        self.emb, self.lstm, self.head = rnnlm.wte, rnnlm.rnn, rnnlm.lm_head

    @torch.no_grad()
    def sample(self, batch: int, bos: int, eos: int, max_len: int, gen: torch.Generator) -> list[list[int]]:
        x = torch.full((batch, 1), bos, dtype=torch.long)
        hidden = None
        seqs = torch.zeros(batch, max_len, dtype=torch.long)
        finished = torch.zeros(batch, dtype=torch.bool)
        lengths = torch.full((batch,), max_len)
        for t in range(max_len):
            out, hidden = self.lstm(self.emb(x), hidden)
            probs = torch.softmax(self.head(out[:, -1]), -1)
            x = torch.multinomial(probs, 1, generator=gen)
            seqs[:, t] = x[:, 0]
            newly = (x[:, 0] == eos) & ~finished
            lengths[newly] = t + 1
            finished |= newly
            if bool(finished.all()):
                break
        return [seqs[i, :lengths[i]].tolist() for i in range(batch)]


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    ap.add_argument("--model", default="moses-smiles")
    ap.add_argument("--batch", type=int, default=128)
    ap.add_argument("--batches", type=int, default=4, help="batches per timed run")
    ap.add_argument("--rounds", type=int, default=7)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.batch, args.batches, args.rounds = 16, 1, 2
    torch.set_num_threads(args.threads)
    import genforge

    mm = genforge.load(args.model)
    if getattr(mm.model, "kind", "") != "rnn" or mm.model.config.cell != "lstm":
        raise SystemExit(f"{args.model} is not an LSTM molecule model: the peer loop is an LSTM")
    peer = PlainLSTMSampler(mm.model).eval()
    n, bos, eos, max_len = args.batch * args.batches, mm.codec.bos_id, mm.codec.eos_id, 120

    def run_ours(seed: int) -> tuple[float, float]:
        t = time.perf_counter()
        out = mm.sample(n, seed=seed, temperature=1.0, batch_size=args.batch, max_tokens=max_len)
        return n / (time.perf_counter() - t), sum(map(len, out)) / n

    def run_peer(seed: int) -> tuple[float, float]:
        gen = torch.Generator().manual_seed(seed)
        t = time.perf_counter()
        out = [s for _ in range(args.batches) for s in peer.sample(args.batch, bos, eos, max_len, gen)]
        rate = n / (time.perf_counter() - t)
        return rate, sum(len(mm.codec.decode(s).rstrip("\n")) for s in out) / n

    run_ours(0), run_peer(0)  # warm up
    ours, theirs, len_ours, len_peer = [], [], [], []
    for r in range(args.rounds):
        order = (run_ours, run_peer) if r % 2 == 0 else (run_peer, run_ours)
        for fn in order:
            rate, mean_len = fn(r + 1)
            (ours if fn is run_ours else theirs).append(rate)
            (len_ours if fn is run_ours else len_peer).append(mean_len)
    ratio = paired_ratio(ours, theirs)
    print(f"ours {median(ours):.0f} mol/s, plain LSTM loop {median(theirs):.0f} mol/s, ratio {ratio['median']:.2f}x "
          f"[{ratio['min']:.2f}-{ratio['max']:.2f}] (batch {args.batch}, {args.threads} threads); mean SMILES length "
          f"{median(len_ours):.1f} vs {median(len_peer):.1f} characters")
    out_dir = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    path = write_result("molecule_sampling", {
        "model": args.model, "parameters": sum(p.numel() for p in mm.model.parameters()), "batch": args.batch,
        "molecules_per_run": n, "threads": args.threads, "ours_mol_per_s": ours, "peer_mol_per_s": theirs,
        "ours_median": median(ours), "peer_median": median(theirs), "ratio": ratio,
        "mean_length_ours": median(len_ours), "mean_length_peer": median(len_peer)}, out_dir)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
