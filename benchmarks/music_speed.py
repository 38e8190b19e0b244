"""Time to compose one 30-second piece on the CPU: event tokens, MIDI and WAV, with the bundled bach-chorales model.

Ours: ``MusicModel.compose`` (the KV-cached token loop, sliding past the 384-token context) for a chorale
in G major, then ``midi_bytes`` and FluidSynth's WAV. Peer, on the same weights in this process: nanoGPT's
``generate`` (crop the input to the context and run the whole window through the model for every token)
for the same number of tokens. Rounds alternate the two; reported are medians per stage, the median of
the per-round speed ratios (``common.paired_ratio``) and the real-time factor (seconds of music a second
of compute; above 1 is faster than real time). A piece the model ends early (its end token) is counted
in ``runs`` but not in the medians: seeds go on until ``--rounds`` pieces reach the full length.

    python benchmarks/music_speed.py              # about two minutes on 2 idle cores
    python benchmarks/music_speed.py --smoke      # seconds, results/smoke/
"""
from __future__ import annotations

import argparse
import sys
import tempfile
import time
from pathlib import Path

sys.path.insert(0, str(Path(__file__).resolve().parent))
from common import RESULTS, median, paired_ratio, write_result  # noqa: E402


def _peer(mm, prompt_ids: list[int], n: int, seed: int) -> float:
    """nanoGPT's ``generate`` on our weights: crop to the context, full forward pass per token."""
    import torch

    model, ctx = mm.model, mm.context_length
    g = torch.Generator().manual_seed(seed)
    idx = torch.tensor([prompt_ids])
    t0 = time.perf_counter()
    with torch.inference_mode():
        for _ in range(n):
            logits = model(idx[:, -ctx:])[:, -1, :]
            idx = torch.cat((idx, torch.multinomial(torch.softmax(logits.float(), -1), 1, generator=g)), dim=1)
    return time.perf_counter() - t0


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--model", default="bach-chorales")
    ap.add_argument("--seconds", type=float, default=30.0)
    ap.add_argument("--rounds", type=int, default=5)
    ap.add_argument("--threads", type=int, default=2)
    ap.add_argument("--smoke", action="store_true")
    ap.add_argument("--out-dir", default=None)
    args = ap.parse_args()
    if args.smoke:
        args.seconds, args.rounds = 4.0, 2
    import torch

    import genforge
    from genforge.music import duration_s, midi_bytes, render_wav, synthesizer_problem

    torch.set_num_threads(args.threads)
    mm = genforge.load(args.model)
    head = mm.prompt_text("chorale" if "chorale" in mm.known("style") else None, "G major", None)
    prompt_ids = mm.codec.encode(head)
    runs = []
    ours_rate, peer_rate = [], []
    with tempfile.TemporaryDirectory() as tmp:
        r = 0
        while sum(x["music_s"] >= 0.99 * args.seconds for x in runs) < args.rounds and r < 4 * args.rounds:
            t0 = time.perf_counter()
            d = mm.compose(1, key="G major", style="chorale" if "chorale" in mm.known("style") else None,
                           seconds=args.seconds, seed=r)[0]
            tokens_s = time.perf_counter() - t0
            n_tokens = d.tokens
            t1 = time.perf_counter()
            midi = midi_bytes(d.piece)
            midi_s = time.perf_counter() - t1
            wav_s = None
            if synthesizer_problem() is None:
                t2 = time.perf_counter()
                render_wav(midi, Path(tmp) / f"r{r}.wav")
                wav_s = time.perf_counter() - t2
            peer_s = _peer(mm, prompt_ids, max(n_tokens, 1), r)
            total = tokens_s + midi_s + (wav_s or 0.0)
            music = duration_s(d.piece)
            runs.append({"tokens": n_tokens, "notes": int(len(d.piece.notes)), "music_s": music,
                         "tokens_s": tokens_s, "midi_s": midi_s, "wav_s": wav_s, "total_s": total,
                         "peer_tokens_s": peer_s})
            if music >= 0.99 * args.seconds:
                ours_rate.append(n_tokens / tokens_s)
                peer_rate.append(n_tokens / peer_s)
            print(f"round {r}: {n_tokens} tokens, {music:.1f} s of music: tokens {tokens_s:.2f} s, "
                  f"MIDI {midi_s:.3f} s, WAV {wav_s if wav_s is None else round(wav_s, 2)} s; "
                  f"nanoGPT crop {peer_s:.2f} s", flush=True)
            r += 1
    ratio = paired_ratio(ours_rate, peer_rate)
    full = [x for x in runs if x["music_s"] >= 0.99 * args.seconds]
    summary = {k: median([x[k] for x in full if x[k] is not None]) if any(x[k] is not None for x in full) else None
               for k in ("tokens", "music_s", "tokens_s", "midi_s", "wav_s", "total_s", "peer_tokens_s")}
    summary["ended_early"] = len(runs) - len(full)
    summary["real_time_factor"] = summary["music_s"] / summary["total_s"]
    print(f"median: {summary['total_s']:.2f} s for {summary['music_s']:.1f} s of music (real-time factor "
          f"{summary['real_time_factor']:.1f}); token loop {ratio['median']:.1f}x nanoGPT's crop-and-recompute")
    out = Path(args.out_dir) if args.out_dir else (RESULTS / "smoke" if args.smoke else RESULTS)
    path = write_result("music_speed", {"config": {"model": args.model, "seconds": args.seconds, "rounds": args.rounds,
                                                   "threads": args.threads, "key": "G major", "smoke": args.smoke},
                                        "runs": runs, "median": summary, "speedup_vs_nanogpt_crop": ratio}, out)
    print(f"wrote {path}")


if __name__ == "__main__":
    main()
