"""Tests for dsm_core.data: readers on files written here, exact grayscale, resumable sampling."""

import gzip
import json
import logging
import os
import pickle
import struct
from pathlib import Path

import numpy as np
import pytest
import torch
from PIL import Image, features

from dsm_core import data as D
from dsm_core.data import natural

# ------------------------------------------------------------------------------------------------
# helpers


@pytest.fixture
def rng() -> np.random.Generator:
    return np.random.default_rng(0)


def _random_images(rng: np.random.Generator, n: int, c: int, side: int) -> np.ndarray:
    return rng.integers(0, 256, size=(n, c, side, side), dtype=np.uint8)


def _write_imagenet_batch(
    path: Path, rng: np.random.Generator, n: int, side: int, first_label: int, compressed: bool
) -> np.ndarray:
    """An ImageNet64-style .npz: data uint8 (n, 3*side*side), labels; returns the data."""
    data = rng.integers(0, 256, size=(n, 3 * side * side), dtype=np.uint8)
    labels = np.arange(first_label, first_label + n)
    (np.savez_compressed if compressed else np.savez)(path, data=data, labels=labels)
    return data


def _write_idx(path: Path, array: np.ndarray, magic: int, gz: bool) -> None:
    header = struct.pack(">I", magic) + struct.pack(f">{array.ndim}I", *array.shape)
    payload = header + array.astype(np.uint8).tobytes()
    if gz:
        with gzip.open(path, "wb") as file:
            file.write(payload)
    else:
        path.write_bytes(payload)


def _write_cifar_batch(path: Path, images: np.ndarray, labels: list[int], protocol: int) -> None:
    """A CIFAR-10 python batch: pickled dict with bytes keys, b'data' (N, 3072), b'labels'."""
    batch = {
        b"batch_label": b"testing batch",
        b"labels": labels,
        b"data": images.reshape(len(images), -1),
        b"filenames": [f"img_{i}.png".encode() for i in range(len(images))],
    }
    with open(path, "wb") as file:
        pickle.dump(batch, file, protocol=protocol)


# ------------------------------------------------------------------------------------------------
# grayscale, dataset, flips


def test_rgb_to_gray_matches_pil_on_every_colour() -> None:
    """All 2**24 RGB colours, in four slices: identical to PIL's convert("L")."""
    for quarter in range(4):
        values = np.arange(quarter << 22, (quarter + 1) << 22, dtype=np.uint32)
        rgb = np.stack([(values >> 16) & 255, (values >> 8) & 255, values & 255], axis=-1)
        rgb = rgb.astype(np.uint8).reshape(2048, 2048, 3)
        expected = np.asarray(Image.fromarray(rgb).convert("L"))
        gray = D.rgb_to_gray(rgb, channel_axis=-1)[..., 0]
        np.testing.assert_array_equal(gray, expected)


def test_rgb_to_gray_shapes_and_errors(rng: np.random.Generator) -> None:
    images = _random_images(rng, 5, 3, 4)
    assert D.rgb_to_gray(images).shape == (5, 1, 4, 4)
    assert D.rgb_to_gray(images[0]).shape == (1, 4, 4)
    with pytest.raises(TypeError):
        D.rgb_to_gray(images.astype(np.float32))
    with pytest.raises(ValueError, match="3 channels"):
        D.rgb_to_gray(images[:, :2])


def test_image_dataset_gathers_across_chunks(rng: np.random.Generator) -> None:
    chunks = [_random_images(rng, n, 3, 4) for n in (3, 5, 2)]
    everything = np.concatenate(chunks)
    dataset = D.ImageDataset(chunks)
    assert len(dataset) == 10 and dataset.image_shape == (3, 4, 4) and dataset.dim == 48
    indices = [9, 0, 4, 3, 4, 7, 1]
    np.testing.assert_array_equal(dataset.images(indices), everything[indices])
    np.testing.assert_array_equal(dataset[-1], everything[9])
    x = dataset.batch(indices)
    assert x.dtype == torch.float32 and x.shape == (7, 3, 4, 4)
    torch.testing.assert_close(x, torch.from_numpy(everything[indices]).float() / 255)
    with pytest.raises(IndexError):
        dataset[10]
    with pytest.raises(IndexError):
        dataset.images([10])


def test_image_dataset_lazy_grayscale_equals_eager(rng: np.random.Generator) -> None:
    images = _random_images(rng, 6, 3, 5)
    lazy = D.ImageDataset(images, grayscale=True)
    assert lazy.image_shape == (1, 5, 5)
    np.testing.assert_array_equal(lazy.to_numpy(), D.rgb_to_gray(images))
    np.testing.assert_array_equal(lazy[2], D.rgb_to_gray(images[2]))


def test_image_dataset_validates_input(rng: np.random.Generator) -> None:
    with pytest.raises(TypeError, match="uint8"):
        D.ImageDataset(np.zeros((2, 1, 4, 4), dtype=np.float32))
    with pytest.raises(ValueError, match="channels"):
        D.ImageDataset(np.zeros((2, 2, 4, 4), dtype=np.uint8))
    with pytest.raises(ValueError, match="equal"):
        D.ImageDataset([_random_images(rng, 2, 1, 4), _random_images(rng, 2, 1, 5)])
    with pytest.raises(ValueError, match="labels"):
        D.ImageDataset(_random_images(rng, 2, 1, 4), labels=np.zeros(3))


def test_batch_flips_mirror_exactly_the_chosen_images(rng: np.random.Generator) -> None:
    images = _random_images(rng, 4, 1, 6)
    dataset = D.ImageDataset(images)
    flips = np.array([True, False, True, False])
    x = dataset.batch([0, 1, 2, 3], flips)
    plain = dataset.batch([0, 1, 2, 3])
    torch.testing.assert_close(x[flips], plain[flips].flip(-1))
    torch.testing.assert_close(x[~flips], plain[~flips])
    np.testing.assert_array_equal(dataset.images([0]), images[:1])  # storage untouched


def test_random_horizontal_flip_uses_the_generator() -> None:
    x = torch.rand(64, 1, 3, 5, generator=torch.Generator().manual_seed(1))
    first = D.random_horizontal_flip(x, torch.Generator().manual_seed(7))
    second = D.random_horizontal_flip(x, torch.Generator().manual_seed(7))
    torch.testing.assert_close(first, second)
    flipped = (first == x.flip(-1)).flatten(1).all(1)
    kept = (first == x).flatten(1).all(1)
    assert bool((flipped | kept).all()) and 10 < int(flipped.sum()) < 54


# ------------------------------------------------------------------------------------------------
# sampler


def _take(batches, count: int) -> list[torch.Tensor]:
    return [next(batches) for _ in range(count)]


def test_sampler_cycles_over_fresh_permutations() -> None:
    sampler = D.BatchSampler(10, 3, seed=5)
    stream = np.concatenate([next(sampler)[0] for _ in range(10)])  # 30 items = 3 epochs
    epochs = stream.reshape(3, 10)
    for epoch in epochs:
        np.testing.assert_array_equal(np.sort(epoch), np.arange(10))
    assert not np.array_equal(epochs[0], epochs[1])
    assert sampler.state_dict() == {"seed": 5, "epoch": 3, "position": 0, "num_items": 10}
    other = D.BatchSampler(10, 3, seed=6)
    assert not np.array_equal(next(other)[0], stream[:3])


def test_resuming_mid_epoch_gives_the_same_batches(rng: np.random.Generator) -> None:
    dataset = D.ImageDataset(_random_images(rng, 25, 1, 4))
    original = D.iterate_batches(dataset, 4, seed=3, flip=True)
    _take(original, 7)  # 28 items: epoch 1, position 3
    state = json.loads(json.dumps(original.state_dict()))
    assert state == {"seed": 3, "epoch": 1, "position": 3, "num_items": 25}
    expected = _take(original, 12)  # crosses into epoch 2 and 3
    resumed = D.iterate_batches(dataset, 4, seed=0, flip=True, state=state)
    for x_resumed, x_expected in zip(_take(resumed, 12), expected, strict=True):
        torch.testing.assert_close(x_resumed, x_expected, rtol=0, atol=0)


def test_sampler_flips_are_part_of_the_stream(rng: np.random.Generator) -> None:
    images = _random_images(rng, 50, 1, 4)
    dataset = D.ImageDataset(images)
    sampler = D.BatchSampler(50, 50, seed=0)
    indices, flips = next(D.BatchSampler(50, 50, seed=0))
    x = next(D.iterate_batches(dataset, 50, seed=0))
    assert 10 < flips.sum() < 40
    torch.testing.assert_close(x, dataset.batch(indices, flips))
    unflipped = next(D.iterate_batches(dataset, 50, seed=0, flip=False))
    torch.testing.assert_close(unflipped, dataset.batch(next(sampler)[0]))


def test_sampler_shards_ranks_disjointly() -> None:
    single = D.BatchSampler(17, 6, seed=2)
    ranks = [D.BatchSampler(17, 3, seed=2, rank=r, world_size=2) for r in range(2)]
    for _ in range(5):
        whole = next(single)[0]
        parts = [next(sampler)[0] for sampler in ranks]
        np.testing.assert_array_equal(parts[0], whole[0::2])
        np.testing.assert_array_equal(parts[1], whole[1::2])


def test_sampler_state_errors() -> None:
    sampler = D.BatchSampler(10, 2)
    with pytest.raises(ValueError, match="10 images"):
        D.BatchSampler(11, 2).load_state_dict(sampler.state_dict())
    with pytest.raises(ValueError, match="lacks"):
        sampler.load_state_dict({"seed": 0})
    with pytest.raises(ValueError):
        D.BatchSampler(10, 0)


# ------------------------------------------------------------------------------------------------
# ImageNet64


@pytest.mark.parametrize("side", [64, 8])
def test_imagenet64_folder_is_memory_mapped_and_planar(
    tmp_path: Path, rng: np.random.Generator, side: int
) -> None:
    batches = {
        k: _write_imagenet_batch(
            tmp_path / f"train_data_batch_{k}.npz", rng, 3, side, 100 * k, compressed=False
        )
        for k in (1, 2, 10)
    }
    val = _write_imagenet_batch(tmp_path / "val_data.npz", rng, 4, side, 0, compressed=False)
    train = D.read_imagenet64(tmp_path, "train")
    assert len(train) == 9 and train.image_shape == (3, side, side) and train.is_memory_mapped
    np.testing.assert_array_equal(train.labels, [100, 101, 102, 200, 201, 202, 1000, 1001, 1002])
    np.testing.assert_array_equal(train[6], batches[10][0].reshape(3, side, side))
    test = D.read_imagenet64(tmp_path, "val")
    assert len(test) == 4
    np.testing.assert_array_equal(test.images([3, 1]), val[[3, 1]].reshape(2, 3, side, side))
    gray = D.read_imagenet64(tmp_path / "val_data.npz", grayscale=True)
    np.testing.assert_array_equal(gray.to_numpy(), D.rgb_to_gray(test.to_numpy()))


def test_imagenet64_rows_are_channel_planar(tmp_path: Path) -> None:
    data = np.concatenate([np.full(16, 10), np.full(16, 20), np.full(16, 30)]).astype(np.uint8)
    np.savez(tmp_path / "val_data.npz", data=data[None], labels=np.array([1]))
    image = D.read_imagenet64(tmp_path, "test")[0]  # (3, 4, 4)
    assert image.shape == (3, 4, 4)
    assert (image[0] == 10).all() and (image[1] == 20).all() and (image[2] == 30).all()


def test_imagenet64_compressed(tmp_path: Path, rng: np.random.Generator, caplog) -> None:
    data = _write_imagenet_batch(tmp_path / "val_data.npz", rng, 5, 8, 0, compressed=True)
    with caplog.at_level(logging.WARNING):
        in_memory = D.read_imagenet64(tmp_path, "val")
    assert not in_memory.is_memory_mapped and "extract_dir" in caplog.text
    np.testing.assert_array_equal(in_memory.to_numpy(), data.reshape(5, 3, 8, 8))
    extracted = D.read_imagenet64(tmp_path, "val", extract_dir=tmp_path / "cache")
    assert extracted.is_memory_mapped and (tmp_path / "cache" / "val_data.data.npy").is_file()
    np.testing.assert_array_equal(extracted.to_numpy(), data.reshape(5, 3, 8, 8))


def test_imagenet64_pickled_batch_and_errors(tmp_path: Path, rng: np.random.Generator) -> None:
    data = rng.integers(0, 256, size=(3, 3 * 4 * 4), dtype=np.uint8)
    with open(tmp_path / "val_data", "wb") as file:
        pickle.dump({"data": data, "labels": [1, 2, 3]}, file)
    dataset = D.read_imagenet64(tmp_path, "test")
    np.testing.assert_array_equal(dataset.to_numpy(), data.reshape(3, 3, 4, 4))
    np.savez(tmp_path / "bad.npz", data=np.zeros((2, 100), dtype=np.uint8))
    with pytest.raises(ValueError, match="3\\*R\\*R"):
        D.read_imagenet64(tmp_path / "bad.npz")
    with pytest.raises(FileNotFoundError, match="train"):
        D.read_imagenet64(tmp_path, "train")
    np.savez(tmp_path / "obj.npz", data=np.array([None, 1], dtype=object))
    with pytest.raises(ValueError, match="object"):
        D.read_imagenet64(tmp_path / "obj.npz")


# ------------------------------------------------------------------------------------------------
# CIFAR-10 and restricted unpickling


def test_cifar10_batches_any_protocol(tmp_path: Path, rng: np.random.Generator) -> None:
    root = tmp_path / "cifar-10-batches-py"
    root.mkdir()
    written = []
    for k, protocol in zip(range(1, 6), (2, 3, 4, 5, 2), strict=True):
        images = _random_images(rng, 2, 3, 32)
        _write_cifar_batch(root / f"data_batch_{k}", images, [k, k + 1], protocol)
        written.append(images)
    test_images = _random_images(rng, 3, 3, 32)
    _write_cifar_batch(root / "test_batch", test_images, [0, 1, 2], 5)
    with open(root / "batches.meta", "wb") as file:
        pickle.dump({b"label_names": [b"airplane", b"automobile"], b"num_vis": 3072}, file, 2)
    train = D.read_cifar10(tmp_path, "train")  # the parent folder works too
    np.testing.assert_array_equal(train.to_numpy(), np.concatenate(written))
    assert train.labels.tolist() == [1, 2, 2, 3, 3, 4, 4, 5, 5, 6]
    assert train.label_names == ("airplane", "automobile")
    test = D.read_cifar10(root, "test", grayscale=True)
    np.testing.assert_array_equal(test.to_numpy(), D.rgb_to_gray(test_images))


class _RunsShell:
    def __init__(self, marker: Path) -> None:
        self.marker = marker

    def __reduce__(self):
        return (os.system, (f"touch {self.marker}",))


class _CallsEval:
    def __reduce__(self):
        return (eval, ("1 + 1",))


@pytest.mark.parametrize("protocol", [2, 5])
def test_malicious_pickle_is_refused_and_nothing_runs(tmp_path: Path, protocol: int) -> None:
    marker = tmp_path / "pwned"
    (tmp_path / "cifar").mkdir()
    with open(tmp_path / "cifar" / "data_batch_1", "wb") as file:
        pickle.dump({b"data": _RunsShell(marker), b"labels": [0]}, file, protocol=protocol)
    with pytest.raises(pickle.UnpicklingError, match="refusing to load global .*system"):
        D.read_cifar10(tmp_path / "cifar", "train")
    assert not marker.exists()
    with open(tmp_path / "evil.pkl", "wb") as file:
        pickle.dump([_CallsEval()], file, protocol=protocol)
    with pytest.raises(
        pickle.UnpicklingError, match=r"refusing to load global (__builtin__|builtins)\.eval"
    ):
        D.safe_unpickle(tmp_path / "evil.pkl")


# ------------------------------------------------------------------------------------------------
# image folders


def _solid(mode: str, size: tuple[int, int], colour) -> Image.Image:
    return Image.new(mode, size, colour)


def test_image_folder_formats_and_modes(tmp_path: Path, caplog) -> None:
    root = tmp_path / "images"
    (root / "nested" / "deeper").mkdir(parents=True)
    _solid("RGB", (8, 8), (255, 0, 0)).save(root / "a_red.png")
    rgba = Image.new("RGBA", (8, 8), (255, 0, 0, 0))  # fully transparent -> white
    rgba.save(root / "b_transparent.png")
    palette = _solid("RGB", (8, 8), (0, 0, 255)).convert("P")
    palette.save(root / "nested" / "c_palette.gif")
    _solid("CMYK", (8, 8), (0, 0, 0, 0)).save(root / "nested" / "d_cmyk.jpg", quality=100)
    sixteen = np.full((8, 8), 128 * 257, dtype=np.uint16)
    Image.fromarray(sixteen).save(root / "nested" / "deeper" / "e_16bit.png")
    _solid("L", (8, 8), 77).save(root / "f_gray.tiff")
    _solid("RGB", (8, 8), (0, 255, 0)).save(root / "g_green.BMP")
    frames = [_solid("RGB", (8, 8), (255, 255, 255)), _solid("RGB", (8, 8), (0, 0, 0))]
    frames[0].save(root / "h_animated.gif", save_all=True, append_images=frames[1:])
    if features.check("webp"):
        _solid("RGB", (8, 8), (0, 0, 0)).save(root / "i_black.webp", lossless=True)
    (root / "j_broken.png").write_bytes(b"not an image at all")
    (root / "notes.txt").write_text("ignored")

    with caplog.at_level(logging.WARNING):
        dataset = D.read_image_folder(root, 8, mode="crop")
    assert "j_broken.png" in caplog.text and "skipped 1" in caplog.text
    images = dataset.to_numpy()  # sorted by path: a, b, f, g, h, i, nested/c, d, e
    expected = [(255, 0, 0), (255, 255, 255), (77, 77, 77), (0, 255, 0), (255, 255, 255)]
    if features.check("webp"):
        expected.append((0, 0, 0))
    expected += [(0, 0, 255), (255, 255, 255), (128, 128, 128)]
    assert images.shape == (len(expected), 3, 8, 8)
    for image, colour in zip(images, expected, strict=True):
        np.testing.assert_allclose(image.mean(axis=(1, 2)), colour, atol=2)
    gray = D.read_image_folder(root, 4, mode="resize", grayscale=True)
    assert gray.image_shape == (1, 4, 4)
    red_luma = int(np.asarray(Image.new("RGB", (1, 1), (255, 0, 0)).convert("L"))[0, 0])
    assert abs(float(gray[0].mean()) - red_luma) < 2


def test_image_folder_applies_exif_orientation(tmp_path: Path) -> None:
    pixels = np.zeros((16, 32), dtype=np.uint8)
    pixels[8:] = 255  # stored: top black, bottom white, 32 wide
    exif = Image.Exif()
    exif[0x0112] = 6  # "rotate 90 degrees clockwise to display": left white, right black
    Image.fromarray(pixels).save(tmp_path / "rotated.jpg", exif=exif, quality=95)
    image = D.read_image_folder(tmp_path, 16, grayscale=True)[0][0]  # (16, 16)
    assert image[:, :6].mean() > 240 and image[:, 10:].mean() < 15


def test_image_folder_resize_center_crops_then_resizes(tmp_path: Path) -> None:
    pixels = np.zeros((10, 30, 3), dtype=np.uint8)
    pixels[:, 10:20] = 200  # the central square is uniform 200, the sides black
    Image.fromarray(pixels).save(tmp_path / "wide.png")
    resized = D.read_image_folder(tmp_path, 5, mode="resize")[0]
    assert resized.shape == (3, 5, 5) and (resized == 200).all()
    with pytest.raises(ValueError, match="no readable"):
        D.read_image_folder(tmp_path, 12, mode="crop")  # 10 pixels high: too small, skipped


def test_image_folder_errors(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="no readable"):
        D.read_image_folder(tmp_path, 8)
    (tmp_path / "x.jpg").write_bytes(b"\xff\xd8 truncated")
    with pytest.raises(ValueError, match="no readable"):
        D.read_image_folder(tmp_path, 8)
    with pytest.raises(ValueError, match="mode"):
        D.load_image_file(tmp_path / "x.jpg", 8, mode="stretch")


# ------------------------------------------------------------------------------------------------
# plain arrays


@pytest.mark.parametrize(
    ("shape", "to_nchw"),
    [
        ((4, 6, 6), lambda a: a[:, None]),
        ((4, 6, 6, 3), lambda a: a.transpose(0, 3, 1, 2)),
        ((4, 6, 6, 1), lambda a: a.transpose(0, 3, 1, 2)),
        ((4, 3, 6, 6), lambda a: a),
    ],
)
def test_read_array_layouts(tmp_path: Path, rng: np.random.Generator, shape, to_nchw) -> None:
    array = rng.integers(0, 256, size=shape, dtype=np.uint8)
    np.save(tmp_path / "images.npy", array)
    dataset = D.read_array(tmp_path / "images.npy")
    np.testing.assert_array_equal(dataset.to_numpy(), to_nchw(array))
    np.savez(tmp_path / "images.npz", images=array, labels=np.arange(4))
    np.testing.assert_array_equal(D.read_array(tmp_path / "images.npz").to_numpy(), to_nchw(array))


def test_read_array_floats_and_memory_map(tmp_path: Path, rng: np.random.Generator) -> None:
    floats = rng.random((3, 1, 5, 5))
    np.savez_compressed(tmp_path / "floats.npz", floats)
    dataset = D.read_array(tmp_path / "floats.npz")
    np.testing.assert_array_equal(dataset.to_numpy(), np.round(floats * 255).astype(np.uint8))
    np.save(tmp_path / "u8.npy", rng.integers(0, 256, (3, 1, 5, 5), dtype=np.uint8))
    assert D.read_array(tmp_path / "u8.npy").is_memory_mapped


@pytest.mark.parametrize(
    ("array", "message"),
    [
        (np.full((2, 4, 4), 1.5), r"expected \[0, 1\]"),
        (np.full((2, 4, 4), -1, dtype=np.int16), r"expected \[0, 255\]"),
        (np.zeros((2, 4), dtype=np.uint8), "expected images"),
        (np.zeros((2, 4, 4, 4, 1), dtype=np.uint8), "expected images"),
        (np.zeros((2, 5, 4, 4), dtype=np.uint8), "channels"),
        (np.zeros((2, 3, 4, 3), dtype=np.uint8), "layout"),
        (np.array([[[None]]], dtype=object), "pickle"),
    ],
)
def test_read_array_errors(tmp_path: Path, array: np.ndarray, message: str) -> None:
    np.save(tmp_path / "bad.npy", array, allow_pickle=True)
    with pytest.raises(ValueError, match=message):
        D.read_array(tmp_path / "bad.npy")


def test_read_array_explicit_layout_and_key(tmp_path: Path, rng: np.random.Generator) -> None:
    array = rng.integers(0, 256, (2, 3, 4, 3), dtype=np.uint8)
    np.savez(tmp_path / "two.npz", a=array, b=array)
    with pytest.raises(ValueError, match="key="):
        D.read_array(tmp_path / "two.npz")
    dataset = D.read_array(tmp_path / "two.npz", key="b", layout="NHWC")
    np.testing.assert_array_equal(dataset.to_numpy(), array.transpose(0, 3, 1, 2))


# ------------------------------------------------------------------------------------------------
# idx files (Fashion-MNIST)


@pytest.mark.parametrize("gz", [True, False])
def test_fashion_mnist_idx(tmp_path: Path, rng: np.random.Generator, gz: bool) -> None:
    suffix = ".gz" if gz else ""
    images = rng.integers(0, 256, (7, 28, 28), dtype=np.uint8)
    labels = rng.integers(0, 10, 7, dtype=np.uint8)
    _write_idx(tmp_path / f"t10k-images-idx3-ubyte{suffix}", images, 2051, gz)
    _write_idx(tmp_path / f"t10k-labels-idx1-ubyte{suffix}", labels, 2049, gz)
    dataset = D.read_fashion_mnist(tmp_path, "test")
    np.testing.assert_array_equal(dataset.to_numpy(), images[:, None])
    np.testing.assert_array_equal(dataset.labels, labels)
    assert dataset.label_names[9] == "Ankle boot"
    with pytest.raises(FileNotFoundError, match="apt-get install dataset-fashion-mnist"):
        D.read_fashion_mnist(tmp_path, "train")


def test_idx_header_validation(tmp_path: Path, rng: np.random.Generator) -> None:
    images = rng.integers(0, 256, (3, 4, 4), dtype=np.uint8)
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, 2049, gz=False)  # wrong magic
    with pytest.raises(ValueError, match="magic 2049, expected 2051"):
        D.read_fashion_mnist(tmp_path, "train")
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, 2051, gz=False)
    truncated = (tmp_path / "train-images-idx3-ubyte").read_bytes()[:-1]
    (tmp_path / "train-images-idx3-ubyte").write_bytes(truncated)
    with pytest.raises(ValueError, match="header says shape"):
        D.read_fashion_mnist(tmp_path, "train")
    _write_idx(tmp_path / "train-images-idx3-ubyte", images, 2051, gz=False)
    _write_idx(tmp_path / "train-labels-idx1-ubyte", np.zeros(4, np.uint8), 2049, gz=False)
    with pytest.raises(ValueError, match="4 labels for 3 images"):
        D.read_fashion_mnist(tmp_path, "train")
    (tmp_path / "junk").write_bytes(b"\x01\x02\x03\x04\x05")
    with pytest.raises(ValueError, match="not an idx file"):
        D.read_idx(tmp_path / "junk")


@pytest.mark.skipif(not D.FASHION_MNIST_DIR.is_dir(), reason="dataset-fashion-mnist not installed")
def test_real_fashion_mnist_files() -> None:
    train = D.load_dataset("fashion-mnist", "train")
    test = D.load_dataset("fashion-mnist", "test")
    assert (len(train), *train.image_shape) == (60000, 1, 28, 28)
    assert (len(test), *test.image_shape) == (10000, 1, 28, 28)
    assert np.bincount(test.labels).tolist() == [1000] * 10


# ------------------------------------------------------------------------------------------------
# digits and the bundled photographs


def test_digits_are_exact_sixteenths() -> None:
    from sklearn.datasets import load_digits

    reference = load_digits().images  # (1797, 8, 8), 0..16
    train, test = D.read_digits("train"), D.read_digits("test")
    assert len(train) == 1500 and len(test) == 297 and train.image_shape == (1, 8, 8)
    x = test.batch(np.arange(len(test)))
    torch.testing.assert_close(x[:, 0], torch.from_numpy(reference[1500:] / 16).float())
    assert float(x.max()) == 1.0


def test_every_bundled_photograph_loads_offline() -> None:
    names = [name for name, _ in D.NATURAL_PHOTOS]
    assert len(names) == len(set(names)) == 17
    for name in names:
        photo = D.load_natural_photo(name)
        assert photo.dtype == np.uint8 and min(photo.shape[:2]) >= 256
        assert (photo.ndim == 3) == (name in D.NATURAL_COLOR_PHOTOS), name


def test_natural_splits_are_disjoint_by_photograph() -> None:
    train, test = D.natural_photo_names("train"), D.natural_photo_names("test")
    assert set(train).isdisjoint(test) and set(test) == set(D.NATURAL_TEST_PHOTOS)
    assert len(train) + len(test) == 17
    color_train = D.natural_photo_names("train", grayscale=False)
    color_test = D.natural_photo_names("test", grayscale=False)
    assert set(color_train) | set(color_test) == set(D.NATURAL_COLOR_PHOTOS)
    assert len(test) == 13  # the shipped test sample spans many scenes
    assert set(color_test) == set(D.NATURAL_COLOR_PHOTOS) - {"rocket"} and color_train == (
        "rocket",
    )


def test_natural_crops_are_deterministic_and_labelled() -> None:
    first = D.natural_image_crops("test", 16, 24, seed=0)
    again = D.natural_image_crops("test", 16, 24, seed=0)
    other = D.natural_image_crops("test", 16, 24, seed=1)
    assert first.image_shape == (1, 16, 16) and len(first) == 24
    np.testing.assert_array_equal(first.to_numpy(), again.to_numpy())
    assert not np.array_equal(first.to_numpy(), other.to_numpy())
    assert first.label_names == D.natural_photo_names("test")
    first_26 = D.natural_image_crops("test", 16, 26, seed=0)
    assert np.bincount(first_26.labels).tolist() == [2] * 13  # balanced over 13 photographs
    assert first.to_numpy().std() > 5  # not blank


def test_natural_crops_in_colour() -> None:
    dataset = D.natural_image_crops("train", 8, 12, seed=0, grayscale=False)
    assert dataset.image_shape == (3, 8, 8)
    assert set(dataset.label_names) == set(D.natural_photo_names("train", grayscale=False))
    with pytest.raises(ValueError, match="num_crops"):
        D.natural_image_crops("train", 8, 0)


def test_natural_crops_with_a_photo_folder(tmp_path: Path) -> None:
    """``natural:<folder>`` adds the folder's split (BSDS500 layout: train/, test/) to the bundled
    photographs of the same split, any supported suffix in any letter case; gray photographs
    join grayscale sets only."""
    rng = np.random.default_rng(0)
    for split, count in (("train", 3), ("test", 2)):
        (tmp_path / split).mkdir()
        for k in range(count):
            pixels = rng.integers(0, 256, (40 + k, 50, 3), dtype=np.uint8)
            Image.fromarray(pixels).save(tmp_path / split / f"{split}{k}.PNG")
    Image.fromarray(rng.integers(0, 256, (40, 40), dtype=np.uint8)).save(tmp_path / "train/g.jpg")
    (tmp_path / "train" / "notes.txt").write_text("not a photo")
    train = D.load_dataset(f"natural:{tmp_path}", "train", 16, grayscale=True, num_crops=80)
    bundled = D.natural_photo_names("train")
    folder = tmp_path.name
    assert train.label_names == (*bundled, f"{folder}/g", *(f"{folder}/train{k}" for k in range(3)))
    assert np.bincount(train.labels).tolist() == [10] * 8 and train.name.endswith(":train")
    test = D.load_dataset(f"natural:{tmp_path}", "val", 16, grayscale=True, num_crops=30)
    assert test.label_names[-2:] == (f"{folder}/test0", f"{folder}/test1")
    colour = D.load_dataset(f"natural:{tmp_path}", "train", 16, grayscale=False, num_crops=8)
    assert f"{folder}/g" not in colour.label_names and colour.image_shape == (3, 16, 16)
    with pytest.raises(FileNotFoundError, match="photo folder"):
        D.load_dataset(f"natural:{tmp_path / 'missing'}", "train", 16, num_crops=8)


def test_photo_crops_is_the_natural_crop_routine() -> None:
    # photographs given as arrays (e.g. read from disk) are cut exactly like the bundled ones
    names = D.natural_photo_names("test")
    photos = [D.load_natural_photo(name) for name in names]
    bundled = D.natural_image_crops("test", 16, 10, seed=2)
    given = D.photo_crops(photos, names, 16, 10, seed=2, name="given")
    np.testing.assert_array_equal(given.to_numpy(), bundled.to_numpy())
    np.testing.assert_array_equal(given.labels, bundled.labels)
    assert given.name == "given" and given.label_names == names
    rgb = np.random.default_rng(0).integers(0, 256, (20, 30, 3), dtype=np.uint8)
    assert D.photo_crops([rgb], ["noise"], 8, 3).image_shape == (1, 8, 8)  # luma
    assert D.photo_crops([rgb], ["noise"], 8, 3, grayscale=False).image_shape == (3, 8, 8)
    with pytest.raises(ValueError, match="short side"):
        D.photo_crops([rgb], ["noise"], 24, 3)
    with pytest.raises(ValueError, match="one name per"):
        D.photo_crops([rgb], ["a", "b"], 8, 3)


def test_lomiri_photographs_join_the_test_split_only(fake_lomiri_wallpapers, caplog) -> None:
    """Installed lomiri-wallpapers photographs are test scenes (grayscale and colour), never
    training ones; a large one is reduced to LOMIRI_MAX_SIDE on its long side when read."""
    sizes = {
        "seeding_by_Clements_Engelhardt": (2000, 1125),
        "Kleiber_by_Lukas_Baubkus": (120, 96),
        "Bridge_by_Sander_Klootwijk": (96, 160),
    }
    folder = fake_lomiri_wallpapers(sizes)
    (folder / "Fossa_by_Jasper_Roks.jpg").write_bytes(b"")  # a wallpaper that is no photograph
    in_table_order = tuple(name for name in D.LOMIRI_PHOTOS if name in sizes)
    assert D.natural_photo_names("test") == (*D.NATURAL_TEST_PHOTOS, *in_table_order)
    colour_test = D.natural_photo_names("test", grayscale=False)
    assert colour_test[-3:] == in_table_order and len(colour_test) == 7 + 3
    for grayscale in (True, False):
        assert set(D.natural_photo_names("train", grayscale)).isdisjoint(D.LOMIRI_PHOTOS)
    assert D.load_natural_photo("seeding_by_Clements_Engelhardt").shape == (576, 1024, 3)
    assert D.load_natural_photo("Bridge_by_Sander_Klootwijk").shape == (160, 96, 3)  # as is
    test = D.natural_image_crops("test", 16, 32, seed=0)
    assert test.label_names[-3:] == in_table_order
    assert np.bincount(test.labels, minlength=16).min() == 2  # balanced over 16 scenes
    train = D.load_dataset("natural", "train", 16, grayscale=False, num_crops=8)
    assert set(train.label_names).isdisjoint(D.LOMIRI_PHOTOS)
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1 and "11 of the 14" in warnings[0]  # a partial install, said once
    assert warnings[0].endswith("(apt-get install lomiri-wallpapers-16.04)")


def test_without_lomiri_wallpapers_the_test_split_is_the_bundled_one(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch, caplog
) -> None:
    monkeypatch.setattr(natural, "LOMIRI_WALLPAPER_DIR", tmp_path / "absent")
    with caplog.at_level(logging.WARNING):
        assert D.natural_photo_names("test") == D.NATURAL_TEST_PHOTOS
        dataset = D.natural_image_crops("test", 16, 26, seed=0)
    assert dataset.label_names == D.NATURAL_TEST_PHOTOS
    warnings = [r.getMessage() for r in caplog.records if r.levelno == logging.WARNING]
    assert len(warnings) == 1  # said once, however often the split is asked for
    assert str(tmp_path / "absent") in warnings[0]
    assert "apt-get install lomiri-wallpapers-16.04 lomiri-wallpapers-20.04" in warnings[0]
    with pytest.raises(FileNotFoundError, match="apt-get install lomiri-wallpapers-20.04"):
        D.load_natural_photo("Kleiber_by_Lukas_Baubkus")


INSTALLED_LOMIRI = Path("/usr/share")  # where apt installs lomiri-wallpapers-16.04 and -20.04


@pytest.mark.skipif(
    not (INSTALLED_LOMIRI / "doc/lomiri-wallpapers-16.04/copyright").is_file(),
    reason="apt-get install lomiri-wallpapers-16.04 lomiri-wallpapers-20.04",
)
def test_lomiri_credits_match_the_installed_packages(monkeypatch: pytest.MonkeyPatch) -> None:
    """Every LOMIRI_PHOTOS entry: the author, year and licence its package's copyright file
    states, its package, and a photograph that reads as RGB, reduced to <= 1024 px."""
    copyright_text = (INSTALLED_LOMIRI / "doc/lomiri-wallpapers-16.04/copyright").read_text()
    stanzas = {}
    for stanza in copyright_text.split("\n\n"):
        fields = dict(
            line.split(": ", 1) for line in stanza.splitlines() if line[:1].strip() and ": " in line
        )
        if "Files" in fields:
            stanzas[fields["Files"]] = fields
    monkeypatch.setattr(natural, "LOMIRI_WALLPAPER_DIR", INSTALLED_LOMIRI / "backgrounds")
    for name, credit in D.LOMIRI_PHOTOS.items():
        fields = stanzas[f"{credit.package.removeprefix('lomiri-wallpapers-')}/{name}.jpg"]
        assert fields["License"] == credit.licence, name
        assert credit.author in fields["Copyright"] and str(credit.year) in fields["Copyright"]
        photo = D.load_natural_photo(name)
        assert photo.dtype == np.uint8 and photo.ndim == 3 and max(photo.shape[:2]) == 1024, name
        assert min(photo.shape[:2]) >= 256, name
    assert len(D.natural_photo_names("test")) == 13 + 14
    assert len(D.natural_photo_names("test", grayscale=False)) == 7 + 14


# ------------------------------------------------------------------------------------------------
# load_dataset


def test_load_dataset_unknown_name_lists_valid_ones(tmp_path: Path) -> None:
    with pytest.raises(ValueError, match="natural.*fashion-mnist.*digits.*imagenet64:"):
        D.load_dataset("imagenet")
    with pytest.raises(ValueError, match="split"):
        D.load_dataset("digits", "holdout")
    with pytest.raises(ValueError, match="resolution"):
        D.load_dataset("natural")


def test_load_dataset_dispatches_on_paths(tmp_path: Path, rng: np.random.Generator) -> None:
    imagenet = tmp_path / "imagenet"
    imagenet.mkdir()
    _write_imagenet_batch(imagenet / "train_data_batch_1.npz", rng, 2, 8, 0, compressed=False)
    _write_imagenet_batch(imagenet / "val_data.npz", rng, 3, 8, 0, compressed=False)
    assert len(D.load_dataset(imagenet, "train")) == 2
    val = D.load_dataset(f"imagenet64:{imagenet}", "val", resolution=8, grayscale=True)
    assert len(val) == 3 and val.image_shape == (1, 8, 8)
    assert len(D.load_dataset(imagenet / "val_data.npz")) == 3
    with pytest.raises(ValueError, match="not resized"):
        D.load_dataset(imagenet, "train", resolution=16)

    cifar = tmp_path / "cifar"
    cifar.mkdir()
    _write_cifar_batch(cifar / "data_batch_1", _random_images(rng, 2, 3, 32), [0, 1], 4)
    cifar_train = D.load_dataset(cifar, "train", resolution=16, grayscale=True)
    assert (len(cifar_train), *cifar_train.image_shape) == (2, 1, 16, 16)

    idx = tmp_path / "idx"
    idx.mkdir()
    _write_idx(idx / "train-images-idx3-ubyte.gz", np.zeros((2, 28, 28), np.uint8), 2051, True)
    assert D.load_dataset(idx, "train", resolution=32).image_shape == (1, 32, 32)

    np.save(tmp_path / "x.npy", _random_images(rng, 2, 3, 8))
    np.savez(tmp_path / "x.npz", x=_random_images(rng, 5, 1, 8))
    assert D.load_dataset(tmp_path / "x.npy", grayscale=True).image_shape == (1, 8, 8)
    assert len(D.load_dataset(tmp_path / "x.npz")) == 5

    folder = tmp_path / "photos"
    folder.mkdir()
    _solid("RGB", (20, 12), (10, 20, 30)).save(folder / "p.png")
    assert D.load_dataset(folder, resolution=8).image_shape == (3, 8, 8)
    with pytest.raises(ValueError, match="resolution"):
        D.load_dataset(folder)


def test_load_dataset_names() -> None:
    digits = D.load_dataset("digits", "test", resolution=16)
    assert digits.image_shape == (1, 16, 16) and digits.max_value == 255
    assert float(digits.batch([0]).max()) <= 1.0
    natural = D.load_dataset("natural", "test", resolution=8, grayscale=True, num_crops=8)
    assert natural.image_shape == (1, 8, 8) and len(natural) == 8
