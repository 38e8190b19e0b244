"""``genforge generate`` and ``genforge eval`` for image models: PNG files, and FD-FMNIST against the real floor."""
from __future__ import annotations

import argparse

from .errors import GenforgeError


def generate_images(im, args: argparse.Namespace, params: dict) -> int:
    """Images to PNG files in ``--out`` (default ``samples/``): one per image and a grid, each carrying the
    settings that made it; a progress bar while the sampler runs."""
    import random

    from tqdm.auto import tqdm

    text_only = [k for k, v in params.items() if k != "seed" and (k != "stop" or v)]  # stop: () when not given
    if text_only:
        raise GenforgeError(f"--{text_only[0].replace('_', '-')} applies to text models; {args.model} is an image "
                            "model (its flags: --n, --class, --steps, --sampler, --guidance, --seed)")
    seed = params.get("seed", random.randrange(2**31))
    def given(value, default):
        return default if value is None else value

    from .pipelines.image import DEFAULTS

    n, steps = given(args.n, DEFAULTS["n"]), given(args.steps, DEFAULTS["steps"])
    sampler, guidance = given(args.sampler, DEFAULTS["sampler"]), given(args.guidance, DEFAULTS["guidance"])
    cls, matched = None, ""
    if args.class_ is not None:
        cls = im.class_id(args.class_)
    elif args.prompt is not None:
        cls, matched = im.class_from_prompt(args.prompt)  # the class the prompt names
    im.check(n=n, steps=steps, sampler=sampler, guidance=guidance, seed=seed)
    if cls is not None:
        print(f"class {cls} ({im.classes[cls] if cls < len(im.classes) else cls})"
              + (f", from the prompt ({matched})" if matched else ""))
    gan = im.family == "gan"
    with tqdm(total=1 if gan else steps, unit="step", desc="sampling", dynamic_ncols=True) as bar:
        images = im.generate(n=n, cls=cls, steps=steps, sampler=sampler, guidance=guidance, seed=seed,
                             callback=lambda i, total: bar.update(1), truncation=args.truncation)
    settings = {"seed": seed, **({"truncation": given(args.truncation, im.truncation)} if gan else
                                  {"steps": steps, "sampler": sampler, "guidance": guidance}),
                "class": None if cls is None else im.classes[cls] if cls < len(im.classes) else cls,
                "prompt": args.prompt}
    paths = im.save(images, args.out or "samples", settings)
    print(f"wrote {len(paths) - 1} images and {paths[-1]} (seed {seed})")
    return 0


def eval_images(im, args: argparse.Namespace) -> int:
    """FD-FMNIST: Frechet distance, precision/recall and conditional accuracy of ``--n`` class-balanced
    samples against the training images, beside the same figures for n real test images (the floor)."""
    import torch
    from tqdm.auto import tqdm

    from .data.images import FASHION_MNIST_CLASSES, load_images
    from .eval.image_features import default_feature_net
    from .eval.image_metrics import evaluate_images, real_floor

    if im.classes != FASHION_MNIST_CLASSES or im.shape != (1, 28, 28):
        raise GenforgeError(f"FD-FMNIST measures 28x28 Fashion-MNIST models; {args.model} draws "
                            f"{'x'.join(map(str, im.shape[1:]))} images of {im.classes[:3]}...")
    n = 10_000 if args.n is None else args.n
    if not 10 <= n <= 100_000:
        raise GenforgeError(f"--n {n} is out of range: allowed 10 .. 100000 samples")
    from .pipelines.image import DEFAULTS

    steps = DEFAULTS["steps"] if args.steps is None else args.steps
    sampler = args.sampler or DEFAULTS["sampler"]
    guidance = DEFAULTS["guidance"] if args.guidance is None else args.guidance
    im.check(n=250, steps=steps, sampler=sampler, guidance=guidance, seed=args.seed)  # one batch's settings
    net = default_feature_net()
    labels = torch.arange(n) % 10  # class-balanced
    images, asked = [], []
    with tqdm(total=n, unit="image", desc="sampling", dynamic_ncols=True) as bar:
        for start in range(0, n, 250):  # batches of 250, one call per class in each
            part = labels[start:start + 250]
            for c in part.unique().tolist():
                k = int((part == c).sum())
                images.append(im.generate(n=k, cls=c, steps=steps, sampler=sampler, guidance=guidance,
                                          seed=args.seed + start + c))
                asked.append(torch.full((k,), c))
            bar.update(len(part))
    fake, fake_labels = torch.cat(images), torch.cat(asked)
    train, test = load_images("fashion-mnist", "train"), load_images("fashion-mnist", "test")
    ours = evaluate_images(fake, fake_labels, train, net)
    floor = real_floor(train, test, net, n=min(n, len(test)))
    print(f"FD-FMNIST ({net.fingerprint()}), {n:,} samples ({sampler}, {steps} steps, guidance {guidance:g}) "
          f"against the {len(train):,} training images; floor: {floor['n']:,} real test images")
    for key in ("fd", "precision", "recall", "conditional_accuracy"):
        print(f"  {key:<22} {ours[key]:8.4f}   floor {floor[key]:8.4f}")
    ratio = ours["fd"] / max(floor["fd"], 1e-12)
    print(f"  FD / floor             {ratio:8.2f}x")
    if args.json:
        import json

        from .atomic import atomic_write_text

        record = {"model": args.model, "samples": n, "sampler": sampler, "steps": steps, "guidance": guidance,
                  "seed": args.seed, "ours": ours, "floor": floor, "fd_over_floor": ratio}
        print(f"wrote {atomic_write_text(args.json, json.dumps(record, indent=2) + chr(10))}")
    return 0
