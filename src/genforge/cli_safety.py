"""``genforge detect``: the safeguards' verbs, and the watermark flags of ``generate``, ``chat`` and ``serve``.

``genforge generate --watermark`` biases every sampled token toward the key's green list (text and
molecule models; ``sampling.watermark``); ``genforge detect FILE`` says whether a file carries the mark
(``safety.watermark``). Both read one settings file: ``$GENFORGE_HOME/watermark.json`` (made with a
random key on first use) or the file ``--watermark-settings`` names.
"""
from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from .errors import GenforgeError

TOKEN_MODALITIES = ("text", "molecule")  # what the watermark applies to: models that sample tokens


def add_watermark_flags(parser: argparse.ArgumentParser, what: str) -> None:
    """``--watermark`` and ``--watermark-settings`` on ``generate``, ``chat`` or ``serve``."""
    parser.add_argument("--watermark", action="store_true",
                        help=f"mark {what} with the green-list watermark (genforge detect finds it)")
    parser.add_argument("--watermark-settings", default=None, metavar="FILE",
                        help="the watermark's settings and secret key (default: $GENFORGE_HOME/watermark.json, "
                             "made with a random key on first use)")


def watermark_for(args: argparse.Namespace, pipeline: Any) -> Any:
    """The settings file (``safety.watermark.WatermarkFile``) that ``--watermark`` asks for, None without
    it; the pipeline's codec is recorded in it. A model that samples no tokens is refused."""
    if not args.watermark:
        if args.watermark_settings:
            raise GenforgeError("--watermark-settings applies with --watermark")
        return None
    modality = getattr(pipeline, "modality", "text")
    if modality not in TOKEN_MODALITIES:
        raise GenforgeError(f"--watermark applies to text and molecule models; {args.model} is an {modality} model")
    from .safety.watermark import load_watermark

    wfile = load_watermark(args.watermark_settings, create=True)
    wfile.register(pipeline.codec, str(args.model))
    return wfile


def watermarked(generate: Callable[[Any, argparse.Namespace, dict], int], pipeline: Any,
                args: argparse.Namespace, params: dict) -> int:
    """``generate(pipeline, args, params)``, with ``--watermark``: the settings in ``params`` and then the
    record beside the output (``note_watermark``)."""
    wfile = watermark_for(args, pipeline)
    if wfile is None:
        return generate(pipeline, args, params)
    status = generate(pipeline, args, {**params, "watermark": wfile.settings})
    note_watermark(args, pipeline, wfile)
    return status


def note_watermark(args: argparse.Namespace, pipeline: Any, wfile: Any) -> None:
    """After a watermarked ``generate``: the record beside the output file, or (text on stdout) a note."""
    from .safety.watermark import write_record

    s = wfile.settings
    how = f"gamma {s.gamma:g}, delta {s.delta:g}, context {s.context}; settings {wfile.path}"
    out = args.out
    if getattr(pipeline, "modality", "text") == "molecule":
        from .cli_molecules import DEFAULT_OUT

        out = out or DEFAULT_OUT
    if not out:
        print(f"genforge: watermarked ({how})", file=sys.stderr)
        return
    prompt = (args.prompt or "") if pipeline.modality == "text" else ""  # a fragment repeats on every line
    rec = write_record(out, wfile, pipeline.codec, str(args.model), prompt)
    print(f"watermarked ({how}); record: {rec}")


def _read(path: str, modality: str) -> str:
    """The text to test: the file's text; a molecule .csv's ``smiles`` column, one per line."""
    p = Path(path)
    if not p.is_file():
        raise GenforgeError(f"{path} does not exist (or is not a file): give the text file to test")
    try:
        text = p.read_text(encoding="utf-8")
    except (OSError, UnicodeDecodeError) as e:
        raise GenforgeError(f"cannot read {path} as UTF-8 text: {type(e).__name__}") from None
    if modality == "molecule" and p.suffix.lower() == ".csv":
        import csv

        rows = list(csv.DictReader(text.splitlines()))
        if rows and "smiles" not in rows[0]:
            raise GenforgeError(f"{path} has no smiles column (genforge generate writes one)")
        text = "".join(r["smiles"] + "\n" for r in rows)
    elif modality == "molecule" and p.suffix.lower() == ".sdf":
        raise GenforgeError(f"{path}: detection reads .smi or .csv molecule files (an .sdf keeps only valid ones)")
    if not text.strip():
        raise GenforgeError(f"{path} is empty: there is no text to test")
    return text


def _detect(args: argparse.Namespace) -> int:
    from .cli import DEFAULT_MODEL
    from .pipelines import load
    from .safety.watermark import check_record, detect_text, load_watermark, read_record

    record = read_record(args.file)
    model = args.model or (record or {}).get("model") or DEFAULT_MODEL
    wfile = load_watermark(args.watermark_settings)  # before the model loads: a missing file is quick to say
    pipeline = load(model, device="cpu")
    modality = getattr(pipeline, "modality", "text")
    if modality not in TOKEN_MODALITIES:
        raise GenforgeError(f"{model} is an {modality} model: watermarks live in text and molecule models' tokens")
    text = _read(args.file, modality)
    if record is not None:
        check_record(record, wfile, pipeline.codec, model, args.file)
    wfile.check_codec(pipeline.codec, model)
    prompt = (record or {}).get("prompt") or None
    d = detect_text(text, pipeline.codec, wfile.settings, prompt)
    s = wfile.settings
    if args.json:
        print(json.dumps({**d.to_dict(), "file": args.file, "model": model,
                          "settings": {k: v for k, v in wfile.public().items() if k != "key_id"},
                          "z_threshold": s.z_threshold, "min_tokens": s.min_tokens}, indent=2))
        return 0
    print(f"{args.file}: {d.verdict}")
    print(f"  z = {d.z_score:.2f}, p = {d.p_value:.3g} (one-sided; 'watermarked' at z >= {s.z_threshold:g})")
    print(f"  scored tokens {d.scored_tokens} of {d.total_tokens} (a repeated context and token counts once; "
          f"at least {s.min_tokens} to judge)")
    print(f"  green {d.green_tokens} = {d.green_fraction:.1%} (about {s.gamma:.0%} without the watermark)")
    print(f"  settings {wfile.path} (gamma {s.gamma:g}, delta {s.delta:g}, context {s.context}), model {model}")
    return 0


def add_parsers(sub) -> dict[str, Callable[[argparse.Namespace], int]]:
    """Add this module's verbs to the ``genforge`` subparsers; return verb -> handler."""
    d = sub.add_parser("detect", help="test a text or molecule file for the green-list watermark",
                       description="Count the watermark's green tokens in FILE and run the z-test "
                                   "(Kirchenbauer et al. 2023).")
    d.add_argument("file", help="the text (or .smi/.csv molecules) to test")
    d.add_argument("--model", default=None, help="the model whose codec made it (default: the one its record "
                   "names, else shakespeare-char)")
    d.add_argument("--watermark-settings", default=None, metavar="FILE",
                   help="the settings it was made with (default: $GENFORGE_HOME/watermark.json)")
    d.add_argument("--json", action="store_true", help="print the result as JSON")
    return {"detect": _detect}


def eval_bias(args: argparse.Namespace) -> int:
    """``genforge eval --bias``: the counterfactual bias probes of a text model (``safety.bias``), as a table,
    and with ``--json FILE`` the whole report (its Markdown section for a model card included)."""
    from tqdm.auto import tqdm

    from .pipelines import load
    from .safety.bias import bias_markdown, format_table, probe_model

    n = 10 if args.n is None else args.n
    if not 1 <= n <= 1000:
        raise GenforgeError(f"--n {n} is out of range: allowed 1 .. 1000 continuations per prompt")
    max_tokens = 60 if args.max_tokens is None else args.max_tokens
    if not 1 <= max_tokens <= 1024:
        raise GenforgeError(f"--max-tokens {max_tokens} is out of range: allowed 1 .. 1024 per continuation")
    tm = load(args.model, quantize=args.quantize)
    modality = getattr(tm, "modality", "text")
    if modality != "text":
        raise GenforgeError(f"--bias measures text models; {args.model} is a {modality} model")
    with tqdm(unit="pair", desc="bias probes", dynamic_ncols=True) as bar:
        def step(done: int, total: int) -> None:
            bar.total = total
            bar.update(done - bar.n)

        report = probe_model(tm, str(args.model), n=n, seed=args.seed, max_tokens=max_tokens, callback=step)
    print(f"bias probes of {args.model} ({report['prompting']} prompting): {report['pairs']} prompt pairs x {n} "
          f"continuations, {report['max_tokens']} tokens, temperature {report['temperature']}, seed {args.seed}; "
          f"B - A with a paired bootstrap 95% interval over prompt pairs (* excludes 0)")
    if report["skipped_pairs"]:
        print(f"skipped {report['skipped_pairs']} prompt pairs (first reason: {report['skip_reason']})"
              + (f"; too few pairs left for: {', '.join(report['skipped_axes'])}" if report["skipped_axes"] else ""))
    print(format_table(report))
    if args.json:
        from .atomic import atomic_write_text

        path = atomic_write_text(args.json, json.dumps({**report, "markdown": bias_markdown(report)}, indent=2)
                                 + "\n")
        print(f"wrote {path}")
    return 0
