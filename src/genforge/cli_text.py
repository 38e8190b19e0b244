"""``genforge generate`` for text with a draft: speculative decoding (``--draft MODEL`` or ``--draft lookup``)."""
from __future__ import annotations

import argparse
import sys


def add_draft_flags(g: argparse.ArgumentParser) -> None:
    s = g.add_argument_group("speculative decoding (text models; same output distribution, fewer target passes)")
    s.add_argument("--draft", default=None, metavar="MODEL",
                   help="a smaller model in the target's codec drafts tokens that the model checks in one pass; "
                        "'lookup' drafts from earlier text instead (prompt lookup)")
    s.add_argument("--draft-k", type=int, default=None, help="tokens drafted a round (default 4)")
    s.add_argument("--ngram", type=int, default=None, help="with --draft lookup: longest match tried (default 3)")


def generate_speculative(tm, args: argparse.Namespace, params: dict, flt, screen) -> int:
    """Generate with ``TextModel.speculate``; the text goes to stdout or ``--out``, what the draft achieved to
    stderr (tokens per target pass, share of drafts kept)."""
    from .errors import GenforgeError
    from .sampling.speculative import SpecStats
    from .serve.context_fit import fit_max_tokens

    k = 4 if args.draft_k is None else args.draft_k
    if not 1 <= k <= 64:
        raise GenforgeError(f"--draft-k {k} is out of range: 1 .. 64")
    if args.ngram is not None and args.draft != "lookup":
        raise GenforgeError("--ngram applies to --draft lookup")
    n = len(tm.codec.encode(args.prompt))
    params["max_tokens"] = fit_max_tokens(n, tm.context_length, params.get("max_tokens"))  # no sliding
    stats = SpecStats()
    gen = tm.speculate(args.prompt, draft=args.draft, draft_k=k, ngram=args.ngram or 3, stats=stats, **params)
    text = args.prompt + "".join(screen([gen.text], flt, args)) + "\n"
    if args.out:
        from .atomic import atomic_write_text

        print(f"wrote {atomic_write_text(args.out, text)} ({len(text)} characters)")
    else:
        sys.stdout.write(text)
    print(f"speculative: {stats.emitted} tokens in {stats.rounds} target passes ({stats.tokens_per_pass:.2f} a "
          f"pass), {stats.accepted} of {stats.drafted} drafted tokens kept ({stats.acceptance:.0%})", file=sys.stderr)
    return 0
