"""``genforge <verb>``: each verb parses its flags and calls one function.

Errors a user can fix print one line (``genforge: error: ...``) and exit 2; no tracebacks.
"""
from __future__ import annotations

import argparse
import os
import sys
from collections.abc import Sequence

from .errors import GenforgeError

DEFAULT_MODEL = "shakespeare-char"
DEFAULT_PROMPT = "MACBETH.\n"


def _train(args: argparse.Namespace, overrides: list[str]) -> int:
    from .config import RunConfig, load_toml

    cfg = RunConfig.from_dict(load_toml(args.config, overrides))  # config errors before torch loads
    from .train.fit import fit

    result = fit(cfg, resume=args.resume)
    if result.checkpoint is not None and os.environ.get("RANK", "0") == "0":
        print(f"done: step {result.step}, val loss {result.val_loss:.4f}; model in {result.checkpoint}")
        print(f"try: genforge generate --model {result.out_dir} --prompt \"...\"")
    return 0


def _rl(args: argparse.Namespace, overrides: list[str]) -> int:
    """``genforge rl``: ``train`` for recipes whose [task] kind is "rl" (and only those)."""
    from .config import load_toml
    from .errors import ConfigError

    task = load_toml(args.config, overrides).get("task", {})
    kind = task.get("kind", "lm") if isinstance(task, dict) else task  # not a table: _train says so
    if kind != "rl":
        raise ConfigError(f"{args.config} is a [task] kind = {kind!r} recipe: genforge rl runs kind = \"rl\" "
                          "recipes; use genforge train for this one")
    return _train(args, overrides)


def _generate(args: argparse.Namespace) -> int:
    import torch

    from .config import MAX_THREADS
    from .pipelines import load

    if not 0 <= args.threads <= MAX_THREADS:
        raise GenforgeError(f"--threads {args.threads} is invalid: allowed 0 (torch's default) .. {MAX_THREADS}")
    from .types import SamplingParams

    if args.threads:
        torch.set_num_threads(args.threads)
    params = _given(args, GENERATE_FLAGS)  # flags left out take SamplingParams' defaults
    params["stop"] = tuple(args.stop or ())
    SamplingParams(**{"max_tokens": 1, **params})  # the one rule, before the model loads
    pipeline = load(args.model, device=args.device, quantize=args.quantize)
    modality = getattr(pipeline, "modality", "text")
    if modality not in GENERATORS:
        raise GenforgeError(f"{args.model} is a {modality} model; genforge generate writes "
                            f"{', '.join(GENERATORS)} so far")
    if args.retrieve and modality != "text":
        raise GenforgeError(f"--retrieve applies to text models; {args.model} is a {modality} model")
    if modality != "music":
        _refuse_flags(args, ("style", "key", "meter", "prompt_file", "seconds"), "music")
    if modality != "text" or args.retrieve:
        _refuse_flags(args, ("draft", "draft_k", "ngram"), "text (without --retrieve)")
    from .cli_safety import watermarked

    return watermarked(GENERATORS[modality], pipeline, args, params)  # --watermark: marked and recorded


def _generate_text(tm, args: argparse.Namespace, params: dict) -> int:
    """Text streams to stdout (prompt, then continuation); ``--out`` writes it to a file instead."""
    from .serve.context_fit import fit_max_tokens

    _refuse_flags(args, IMAGE_FLAGS, "image")
    _refuse_flags(args, ("grid",), "molecule")
    if args.prompt is None:
        args.prompt = DEFAULT_PROMPT
    flt = _safety_filter(args, [args.prompt])  # --safety: a blocked prompt stops here; output is screened
    if args.retrieve:
        return _generate_retrieved(tm, args, params, flt)
    if args.draft:
        from .cli_text import generate_speculative

        return generate_speculative(tm, args, params, flt, _screen)

    # --max-tokens left out: what fits the context beside the prompt
    params["max_tokens"] = fit_max_tokens(len(tm.codec.encode(args.prompt)), tm.context_length,
                                          params.get("max_tokens"), slide=True)  # past the context: it slides
    if args.out or params.get("num_beams", 1) > 1 or params.get("best_of", 1) > 1 or args.no_stream:
        text = args.prompt + "".join(_screen([tm.generate(args.prompt, **params)], flt, args)) + "\n"
        if not args.out:
            sys.stdout.write(text)
            return 0
        from .atomic import atomic_write_text

        path = atomic_write_text(args.out, text)
        print(f"wrote {path} ({len(text)} characters)")
        return 0
    out = sys.stdout
    pieces = _screen(tm.stream(args.prompt, **params), flt, args)  # checks the prompt before anything is printed
    out.write(args.prompt)
    out.flush()
    for piece in pieces:
        out.write(piece)
        out.flush()
    out.write("\n")
    return 0


def _safety_filter(args: argparse.Namespace, texts: list[str]):
    """``--safety FILE|default``: the filter, after refusing ``texts`` it blocks; None without the flag."""
    if not getattr(args, "safety", None):
        return None
    from .safety.filters import load_filter, refuse_input

    flt = load_filter(args.safety)
    refuse_input(flt, texts, str(args.model))
    return flt


def _screen(pieces, flt, args: argparse.Namespace):
    from .safety.filters import screened

    return pieces if flt is None else screened(pieces, flt, str(args.model))


def _generate_retrieved(tm, args: argparse.Namespace, params: dict, flt=None) -> int:
    """``--retrieve``: passages from the index before the prompt; the answer with its citations, its sources
    and the grounding check (unsupported sentences flagged), to stdout or ``--out``."""
    from dataclasses import replace

    from .retrieval.index import parse_filters

    answer = tm.answer(args.prompt, args.retrieve, k=args.k, filters=parse_filters(args.filter), **params)
    if flt is not None:  # cut before a blocked span; the sentences after the cut are not judged
        safe = "".join(_screen([answer.text], flt, args))
        answer = replace(answer, text=safe, grounding=[g for g in answer.grounding if g.end <= len(safe)])
    text = args.prompt + answer.render() + "\n"
    if args.out:
        from .atomic import atomic_write_text

        print(f"wrote {atomic_write_text(args.out, text)} ({len(text)} characters)")
    else:
        sys.stdout.write(text)
    return 0


def _refuse_flags(args: argparse.Namespace, names: Sequence[str], kind: str) -> None:
    for name in names:
        if getattr(args, name) is not None:
            flag = "--class" if name == "class_" else "--" + name.replace("_", "-")
            raise GenforgeError(f"{flag} applies to {kind} models; {args.model} is not one")


def _generate_image(im, args: argparse.Namespace, params: dict) -> int:
    from .cli_images import generate_images

    _refuse_flags(args, ("grid",), "molecule")
    return generate_images(im, args, params)


def _generate_molecules(mm, args: argparse.Namespace, params: dict) -> int:
    from .cli_molecules import generate_molecules

    return generate_molecules(mm, args, params)


IMAGE_FLAGS = ("n", "class_", "steps", "sampler", "guidance", "truncation")
def _generate_music(mm, args: argparse.Namespace, params: dict) -> int:
    from .cli_music import generate_music

    return generate_music(mm, args, params)


def _generate_speech(sm, args: argparse.Namespace, params: dict) -> int:
    from .cli_speech import generate_speech

    return generate_speech(sm, args, params)


GENERATORS = {"text": _generate_text, "image": _generate_image,  # a pipeline's modality -> how `generate` writes
              "molecule": _generate_molecules, "music": _generate_music, "speech": _generate_speech}


def _models(args: argparse.Namespace) -> int:
    from .store import list_models

    rows = list_models()
    if not rows:
        print("no models found")
        return 0
    print(f"{'name':<24} {'source':<8} {'kind':<12} {'params':>10} {'val loss':>9}  path")
    for m in rows:
        vl = f"{m.val_loss:.4f}" if m.val_loss is not None else "-"
        print(f"{m.name:<24} {m.source:<8} {m.kind:<12} {m.parameters:>10,} {vl:>9}  {m.path}")
    return 0


def _export(args: argparse.Namespace) -> int:
    from pathlib import Path

    from .checkpoint import export_model
    from .store import resolve_model

    src = resolve_model(args.run)
    if args.card:
        card = Path(args.card).read_text(encoding="utf-8")
    else:  # written from the checkpoint's own record
        from .checkpoint import read_meta
        from .safety.model_card import card_markdown

        card = card_markdown({**read_meta(src), "weights_dtype": args.dtype}, Path(args.out).name)
    extra = {"chat_template": args.chat_template} if args.chat_template else None
    out = export_model(src, args.out, args.dtype, card, extra)
    print(f"exported {out} ({sum(f.stat().st_size for f in out.iterdir()) / 1e6:.1f} MB)")
    return 0


def _serve(args: argparse.Namespace) -> int:
    from .serve.app import ServeSettings, serve

    key = args.api_key or os.environ.get("GENFORGE_API_KEY") or None
    settings = ServeSettings(models=args.model or ServeSettings().models, api_key=key,
                             max_concurrent=args.max_concurrent, max_batch=args.max_batch, device=args.device,
                             sliding_window=args.sliding_window, max_sliding_tokens=args.max_sliding_tokens,
                             retrieve=args.retrieve, watermark=args.watermark,
                             watermark_settings=args.watermark_settings, safety=args.safety)
    serve(settings, args.host, args.port)  # a model or flag that cannot be served: one line, before listening
    return 0


def _chat(args: argparse.Namespace) -> int:
    from .serve.chat_cli import run_chat

    params = _given(args, CHAT_FLAGS)
    return run_chat(args.model, args.system, params, load_kwargs={"device": args.device, "quantize": args.quantize},
                    retrieve=args.retrieve, k=args.k, watermark=args.watermark,
                    watermark_settings=args.watermark_settings, safety=args.safety)


def _eval(args: argparse.Namespace) -> int:
    import math

    from .data.corpus import read_corpus
    from .pipelines import load

    if args.bias:  # counterfactual bias probes of a text model
        from .cli_safety import eval_bias

        return eval_bias(args)
    tm = load(args.model, quantize=args.quantize)
    if getattr(tm, "modality", "text") == "image":
        from .cli_images import eval_images

        return eval_images(tm, args)
    if getattr(tm, "modality", "text") == "molecule":
        from .cli_molecules import eval_molecules

        return eval_molecules(tm, args)
    if getattr(tm, "modality", "text") == "music":
        from .cli_music import eval_music

        return eval_music(tm, args)
    if getattr(tm, "modality", "text") == "speech":
        from .cli_speech import eval_speech

        return eval_speech(tm, args)
    if getattr(tm, "modality", "text") != "text":
        raise GenforgeError(f"{args.model} is an {tm.modality} model: genforge eval measures text, image, "
                            "molecule, music and speech models")
    if args.corpus is None:
        raise GenforgeError("--corpus is required for a text model: a text file, glob or folder to measure on")
    text = read_corpus(args.corpus)
    ppl = tm.perplexity(text)
    print(f"perplexity {ppl:.4f}  ({math.log(ppl):.4f} nats/token, {math.log2(ppl):.4f} bits/token)")
    return 0


GENERATE_FLAGS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "frequency_penalty",
                  "presence_penalty", "seed", "num_beams", "best_of")
CHAT_FLAGS = ("max_tokens", "temperature", "top_k", "top_p", "min_p", "repetition_penalty", "seed")
_HELP = {"max_tokens": "new tokens at most; default: what fits the context beside the prompt",
         "seed": "default: random; in chat, reply k uses seed + k", "num_beams": "> 1: beam search",
         "best_of": "> 1: sample n, keep the best mean log-prob"}


def _given(args: argparse.Namespace, names: Sequence[str]) -> dict:
    """The sampling flags the user gave (the rest keep ``SamplingParams``' defaults)."""
    return {k: getattr(args, k) for k in names if getattr(args, k) is not None}


def _sampling_flags(parser: argparse.ArgumentParser, names: Sequence[str]) -> None:
    """One flag per sampling parameter; its default and range are ``SamplingParams``' (checked there once)."""
    from .types import SAMPLING_RANGES, sampling_defaults

    defaults = sampling_defaults()
    for name in names:
        rule = SAMPLING_RANGES[name]
        text = _HELP.get(name) or f"default {defaults[name]}"
        parser.add_argument("--" + name.replace("_", "-"), type=int if rule.whole else float, default=None,
                            help=f"{rule.describe()}; {text}")


class _Parser(argparse.ArgumentParser):
    """argparse that reports a usage mistake in one line, like every other genforge error."""

    def error(self, message: str):  # type: ignore[override]
        self.exit(2, f"genforge: error: {message} (see {self.prog} --help)\n")


def build_parser() -> argparse.ArgumentParser:
    from .cli_safety import add_watermark_flags
    from .cli_text import add_draft_flags

    p = _Parser(prog="genforge", description="Train and sample generative models.")
    sub = p.add_subparsers(dest="verb", required=True, parser_class=_Parser)

    t = sub.add_parser("train", help="train a model from a TOML recipe",
                       description="Train per CONFIG; override any field with --section.key=value.")
    t.add_argument("config", help="TOML recipe, e.g. configs/shakespeare-char.toml")
    t.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.out_dir")
    r = sub.add_parser("rl", help="fine-tune a trained model toward a reward (a [task] kind = \"rl\" recipe)",
                       description="Reinforcement learning per CONFIG ([task] kind = \"rl\"); override any field "
                                   "with --section.key=value.")
    r.add_argument("config", help="TOML recipe, e.g. configs/rl-celecoxib.toml")
    r.add_argument("--resume", action="store_true", help="continue from the newest checkpoint in train.out_dir")

    g = sub.add_parser("generate", help="generate text (streaming), images, molecules, music or speech (files) "
                       "from a model")
    g.add_argument("--model", default=DEFAULT_MODEL, help="bundled name, model folder or run folder")
    g.add_argument("--prompt", default=None, help="text to continue (default: 'MACBETH.\\n'); image models: what to "
                   "draw; speech models: the word to say (default: every word it knows)")
    _sampling_flags(g, GENERATE_FLAGS)
    add_watermark_flags(g, "text and molecule models' tokens")
    g.add_argument("--safety", default=None, metavar="FILE", help="text models: refuse a blocked prompt and cut "
                   "blocked output (a TOML file with a [safety] table, or 'default')")
    g.add_argument("--stop", action="append", help="stop string (repeatable); never printed")
    add_draft_flags(g)
    g.add_argument("--quantize", choices=["int8"], default=None, help="int8 weights (CPU)")
    g.add_argument("--device", default="cpu")
    g.add_argument("--threads", type=int, default=0, help="torch CPU threads (0 = default)")
    g.add_argument("--no-stream", action="store_true", help="print the whole text at the end")
    g.add_argument("--out", default=None, help="text: write to this file instead of stdout; images: the folder "
                   "for the PNGs (default samples/); molecules: a .smi, .csv or .sdf file (default "
                   "samples/molecules.smi)")
    g.add_argument("--retrieve", default=None, metavar="INDEX",
                   help="text models: put passages from this index (genforge index add) before the prompt; the "
                   "answer cites them and unsupported sentences are flagged")
    g.add_argument("--k", type=int, default=4, help="with --retrieve: passages to retrieve (default 4)")
    g.add_argument("--filter", action="append", help="with --retrieve: only passages tagged key=value (repeatable)")
    g.add_argument("--grid", default=None, help="molecules: also draw the first 24 valid ones into this PNG")
    images = g.add_argument_group("image and molecule models")
    images.add_argument("--n", type=int, default=None, help="images (default 16) or molecules (default 100) to make")
    images.add_argument("--class", dest="class_", default=None, help="class index or name (default: each in turn)")
    images.add_argument("--steps", type=int, default=None, help="diffusion: sampler steps (default 25)")
    images.add_argument("--sampler", default=None, help="diffusion: ddpm, ddim, heun or dpmpp_2m (default)")
    images.add_argument("--guidance", type=float, default=None,
                        help="diffusion: classifier-free guidance scale (default 2; 1 = none)")
    images.add_argument("--truncation", type=float, default=None,
                        help="GAN: redraw noise beyond this (the truncation trick; default: the recipe's)")
    music = g.add_argument_group("music models (--n pieces, default 1; --out: a folder of .mid, .wav and .png)")
    music.add_argument("--style", default=None, help="e.g. chorale (default: the model's first style)")
    music.add_argument("--key", default=None, help="e.g. 'G major', 'F# minor' (default: the model chooses)")
    music.add_argument("--meter", default=None, help="e.g. 3/4 (default: the model chooses)")
    music.add_argument("--prompt-file", default=None, help="a MIDI, MusicXML or ABC melody to continue")
    music.add_argument("--seconds", type=float, default=None, help="length of each piece (default 30)")

    sub.add_parser("models", help="list bundled and local models")

    x = sub.add_parser("export", help="copy a run's newest weights into a standalone model folder")
    x.add_argument("run", help="run folder or checkpoint folder")
    x.add_argument("out", help="new model folder (e.g. $GENFORGE_HOME/models/NAME)")
    x.add_argument("--dtype", choices=["fp16", "bf16", "fp32"], default="fp16")
    x.add_argument("--card", default=None, help="a Markdown model card to put beside the weights")
    x.add_argument("--chat-template", default=None, help="mark a chat model with its template's name")

    s = sub.add_parser("serve", help="OpenAI-compatible API and web studio")
    s.add_argument("--model", action="append", help="model to serve (repeatable); default: both bundled models")
    s.add_argument("--host", default="127.0.0.1")
    s.add_argument("--port", type=int, default=8000)
    s.add_argument("--api-key", default=None, help="require 'Authorization: Bearer KEY' (or set GENFORGE_API_KEY)")
    s.add_argument("--max-concurrent", type=int, default=64, help="requests in flight before 429")
    s.add_argument("--max-batch", type=int, default=16, help="sequences decoded together")
    s.add_argument("--sliding-window", action="store_true",
                   help="let an explicit max_tokens pass the context: generation slides the window "
                        "(a request can also ask for it: genforge_sliding_window)")
    s.add_argument("--max-sliding-tokens", type=int, default=4096,
                   help="most tokens one request that slides past the context may ask for")
    add_watermark_flags(s, "every reply (POST /v1/detect; --watermark-settings alone: detection only)")
    s.add_argument("--retrieve", default=None, metavar="INDEX",
                   help="passages from this index for every text request (a request's genforge_retrieve overrides)")
    s.add_argument("--safety", default=None, metavar="FILE",
                   help="input and output filters: a TOML file with a [safety] table, or 'default' for the built-in "
                        "list (refusals are logged to GENFORGE_HOME/logs/safety.jsonl)")
    s.add_argument("--device", default="cpu")

    c = sub.add_parser("chat", help="chat in the terminal (history, streaming, /reset, /system, /params)")
    c.add_argument("--model", default="shakespeare-chat", help="bundled name, model folder or run folder")
    c.add_argument("--system", default=None, help="system prompt (default: the chat template's)")
    _sampling_flags(c, CHAT_FLAGS)  # --seed: reply k of a session uses seed + k
    add_watermark_flags(c, "every reply")
    c.add_argument("--safety", default=None, metavar="FILE", help="refuse blocked messages and cut blocked replies "
                   "(a TOML file with a [safety] table, or 'default')")
    c.add_argument("--device", default="cpu")
    c.add_argument("--quantize", choices=["int8"], default=None)
    c.add_argument("--retrieve", default=None, metavar="INDEX", help="passages from this index for every message")
    c.add_argument("--k", type=int, default=4, help="with --retrieve: passages per message (default 4)")

    e = sub.add_parser("eval", help="perplexity of a text model on a corpus; FD-FMNIST of an image model; MOSES "
                       "metrics of a molecule model")
    e.add_argument("--model", default=DEFAULT_MODEL)
    e.add_argument("--corpus", default=None, help="text models: text file, glob or folder; music models: the "
                   "corpus whose held-out pieces to measure on (default: the one the model was trained on)")
    e.add_argument("--quantize", choices=["int8"], default=None)
    e.add_argument("--n", type=int, default=None,
                   help="image / molecule / music models: samples to measure (default 10000 / 30000 / 200)")
    e.add_argument("--steps", type=int, default=None, help="image models: sampler steps (default 25)")
    e.add_argument("--sampler", default=None, help="image models: ddpm, ddim, heun or dpmpp_2m (default)")
    e.add_argument("--guidance", type=float, default=None, help="image models: guidance (default 2)")
    e.add_argument("--seed", type=int, default=0, help="image and music models: seed of the first sample (default 0)")
    e.add_argument("--json", default=None,
                   help="image, molecule and music models: also write the figures to this JSON file")
    e.add_argument("--plot", default=None,
                   help="molecule models: a PNG of logP, SA, QED and weight against the test set")
    e.add_argument("--bias", action="store_true", help="text models: counterfactual bias probes (sentiment and "
                   "word associations per group, with 95%% intervals); --n continuations per prompt (default 10)")
    e.add_argument("--max-tokens", type=int, default=None, help="with --bias: tokens per continuation (default 60)")
    from . import cli_index, cli_safety

    for module in (cli_index, cli_safety):  # verbs kept in their own files: they add parsers and handlers
        VERBS.update(module.add_parsers(sub))
    return p


VERBS: dict = {}  # verb -> handler(args) for the verbs of cli_index and cli_safety (filled by build_parser)


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    parser = build_parser()
    args, rest = parser.parse_known_args(argv)
    if rest and args.verb not in ("train", "rl"):
        parser.error(f"unrecognized arguments: {' '.join(rest)}")
    try:
        if args.verb in ("train", "rl"):
            bad = [a for a in rest if not (a.startswith("--") and "=" in a and "." in a.split("=")[0])]
            if bad:
                parser.error(f"unrecognized arguments: {' '.join(bad)} (overrides look like --train.lr=3e-4)")
            return (_rl if args.verb == "rl" else _train)(args, rest)
        return {"generate": _generate, "models": _models, "eval": _eval, "export": _export,
                "serve": _serve, "chat": _chat, **VERBS}[args.verb](args)
    except GenforgeError as e:
        print(f"genforge: error: {e}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        print("\ngenforge: interrupted", file=sys.stderr)
        return 130
    except BrokenPipeError:
        return 0


if __name__ == "__main__":
    raise SystemExit(main())
