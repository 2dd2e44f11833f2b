"""The bundled natural-image set: photographs shipped inside installed packages, cut into crops."""

import logging
import math
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import numpy as np
from PIL import Image, ImageOps

from dsm_core.data.dataset import ImageDataset, rgb_to_gray
from dsm_core.data.readers import IMAGE_EXTENSIONS, normalize_split, to_8bit_gray_or_rgb

logger = logging.getLogger(__name__)


def _skimage_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import skimage.data

        return getattr(skimage.data, name)()

    load.__name__ = f"skimage.data.{name}"
    return load


def _stereo_motorcycle_left() -> np.ndarray:
    import skimage.data

    return skimage.data.stereo_motorcycle()[0]  # (500, 741, 3); the right view is near-identical


def _sklearn_photo(filename: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        from sklearn.datasets import load_sample_image

        return load_sample_image(filename)

    load.__name__ = f"sklearn.datasets.load_sample_image({filename!r})"
    return load


def _pywt_photo(name: str) -> Callable[[], np.ndarray]:
    def load() -> np.ndarray:
        import pywt.data

        return getattr(pywt.data, name)()

    load.__name__ = f"pywt.data.{name}"
    return load


def _grace_hopper() -> np.ndarray:
    from matplotlib.cbook import get_sample_data

    with Image.open(get_sample_data("grace_hopper.jpg", asfileobj=False)) as image:
        return np.asarray(image.convert("RGB"))  # (600, 512, 3)


# Photographs bundled inside installed wheels; every loader reads a file shipped with its package
# and never touches the network. skimage.data: ONLY these loaders (others download on demand);
# stereo_motorcycle is a near-identical stereo pair, so only its left view is used.
# Sizes (H x W): camera, brick, grass, gravel, moon, aero, ascent 512x512 gray;
# coins 303x384 gray; clock 300x400 gray; astronaut 512x512 RGB; coffee 400x600 RGB;
# chelsea 300x451 RGB; rocket 427x640 RGB; motorcycle 500x741 RGB; china, flower 427x640 RGB;
# grace_hopper 600x512 RGB.
NATURAL_PHOTOS: tuple[tuple[str, Callable[[], np.ndarray]], ...] = (
    ("camera", _skimage_photo("camera")),
    ("astronaut", _skimage_photo("astronaut")),
    ("coffee", _skimage_photo("coffee")),
    ("chelsea", _skimage_photo("chelsea")),
    ("rocket", _skimage_photo("rocket")),
    ("brick", _skimage_photo("brick")),
    ("grass", _skimage_photo("grass")),
    ("gravel", _skimage_photo("gravel")),
    ("moon", _skimage_photo("moon")),
    ("coins", _skimage_photo("coins")),
    ("clock", _skimage_photo("clock")),
    ("motorcycle", _stereo_motorcycle_left),
    ("china", _sklearn_photo("china.jpg")),
    ("flower", _sklearn_photo("flower.jpg")),
    ("aero", _pywt_photo("aero")),
    ("ascent", _pywt_photo("ascent")),
    ("grace_hopper", _grace_hopper),
)
# The photographs that are RGB (the rest are grayscale); colour datasets use only these.
NATURAL_COLOR_PHOTOS = (
    "astronaut",
    "coffee",
    "chelsea",
    "rocket",
    "motorcycle",
    "china",
    "flower",
    "grace_hopper",
)
# Held out: the train split never sees these photographs, in any crop. Thirteen of the seventeen
# scenes, so that the shipped test sample spans many scenes (portraits, animals, objects, aerial and
# astronomical views, landscapes, textures); the training photographs come mostly from a photo
# folder such as BSDS500 (``natural:<folder>``). The four bundled training photographs: brick and
# grass (textures), coins (objects), rocket (the one colour photo, so colour sets have one).
# The test split also holds the 14 LOMIRI_PHOTOS where their Debian packages are installed.
NATURAL_TEST_PHOTOS = (
    "camera",
    "astronaut",
    "coffee",
    "chelsea",
    "gravel",
    "moon",
    "clock",
    "motorcycle",
    "china",
    "flower",
    "aero",
    "ascent",
    "grace_hopper",
)


# Debian's lomiri-wallpapers-16.04 and lomiri-wallpapers-20.04 install their wallpapers here.
LOMIRI_WALLPAPER_DIR = Path("/usr/share/backgrounds")
LOMIRI_PACKAGES = ("lomiri-wallpapers-16.04", "lomiri-wallpapers-20.04")
# Long side (pixels) a lomiri photograph is reduced to when read. They are 1365-6028 px on the long
# side, model crops 32-64 px: log-uniform multi-scale crops of a 6000 px photograph are mostly
# windows onto a few hundred of its pixels, i.e. pure texture, while at <= 1024 px their scales
# run from whole objects down to texture like the bundled photographs' (300-741 px). A reduced
# photograph is at most 3 MB of RGB; none is cached.
LOMIRI_MAX_SIDE = 1024


@dataclass(frozen=True)
class PhotoCredit:
    """Who made a redistributable photograph and under which terms.

    Attributes:
        author: as the package's copyright file writes it.
        year: the year of its copyright notice.
        licence: an SPDX identifier (e.g. "CC-BY-4.0").
        package: the Debian package that installs it.
    """

    author: str
    year: int
    licence: str
    package: str

    @property
    def licence_url(self) -> str:
        """The licence's deed at creativecommons.org."""
        if self.licence == "CC0-1.0":
            return "https://creativecommons.org/publicdomain/zero/1.0/"
        kind, version = self.licence.removeprefix("CC-").rsplit("-", 1)
        return f"https://creativecommons.org/licenses/{kind.lower()}/{version}/"


# The photographs of Debian's lomiri-wallpapers packages (file stem -> credit), read from
# LOMIRI_WALLPAPER_DIR when installed; authors, years and licences as the packages' copyright file
# (/usr/share/doc/lomiri-wallpapers-16.04/copyright) states them. Held out: they join the test
# split, never the train split, so shipped test samples span far more scenes and may be
# redistributed with these credits. All are RGB. The packages' other wallpapers are graphics or
# patterns, not photographs: Fossa, Infinite-Sea, Painting-Colors, umang, analogpattern.
_16, _20 = LOMIRI_PACKAGES
LOMIRI_PHOTOS: dict[str, PhotoCredit] = {
    "Bridge_by_Sander_Klootwijk": PhotoCredit("Sander Klootwijk", 2018, "CC-BY-SA-4.0", _16),
    "Dragonfly_by_Bolly": PhotoCredit('"Bolly"', 2018, "CC-BY-SA-4.0", _16),
    "Kleiber_by_Lukas_Baubkus": PhotoCredit("Lukas Baubkus", 2021, "CC-BY-SA-3.0", _20),
    "Picture_0B_by_freespace": PhotoCredit('Trevor "Freespace"', 2018, "CC-BY-4.0", _16),
    "Picture_1A_by_freespace": PhotoCredit('Trevor "Freespace"', 2018, "CC-BY-4.0", _16),
    "Wine_by_Jakkub_Mede": PhotoCredit("Jakub Mede", 2018, "CC-BY-4.0", _16),
    "aitzgorri_by_Aitzol_Berasategi": PhotoCredit("Aitzol Berasategi", 2018, "CC-BY-4.0", _16),
    "free_by_Peter_Nerlich": PhotoCredit("Peter Nerlich", 2018, "CC-BY-SA-4.0", _16),
    "friends_by_Aitzol_Berasategi": PhotoCredit("Aitzol Berasategi", 2018, "CC-BY-4.0", _16),
    "greentock_by_Peter_Nerlich": PhotoCredit("Peter Nerlich", 2018, "CC-BY-SA-4.0", _16),
    "life_by_Aitzol_Berasategi": PhotoCredit("Aitzol Berasategi", 2018, "CC-BY-4.0", _16),
    "picosdeeuropa_by_Aitzol_Berasategi": PhotoCredit("Aitzol Berasategi", 2018, "CC-BY-4.0", _16),
    "seeding_by_Clements_Engelhardt": PhotoCredit("Clemens Engelhardt", 2018, "CC0-1.0", _16),
    "sunset_by_Aitzol_Berasategi": PhotoCredit("Aitzol Berasategi", 2018, "CC-BY-4.0", _16),
}
_lomiri_folders_reported: set[Path] = set()  # one warning per folder and process


def installed_lomiri_photos() -> tuple[str, ...]:
    """Names of the LOMIRI_PHOTOS whose ``<name>.jpg`` is in LOMIRI_WALLPAPER_DIR, in table order.

    When some are missing (the packages are not installed), logs one warning per folder and
    process saying the natural test split goes without them and how to install them.
    """
    folder = LOMIRI_WALLPAPER_DIR
    present = tuple(name for name in LOMIRI_PHOTOS if (folder / f"{name}.jpg").is_file())
    if len(present) < len(LOMIRI_PHOTOS) and folder not in _lomiri_folders_reported:
        _lomiri_folders_reported.add(folder)
        packages = sorted({c.package for n, c in LOMIRI_PHOTOS.items() if n not in present})
        logger.warning(
            "%d of the %d lomiri-wallpapers test photographs are not in %s: the natural test "
            "split goes without them (apt-get install %s)",
            len(LOMIRI_PHOTOS) - len(present),
            len(LOMIRI_PHOTOS),
            folder,
            " ".join(packages),
        )
    return present


# Terms of photo folders whose licence restricts the use of weights trained on them, by the
# folder's name (``natural:<folder>``); model cards quote them (``training_data_terms``).
PHOTO_FOLDER_TERMS = {
    "bsds500": (
        "trained on BSDS500 (Arbeláez, Maire, Fowlkes, Malik, TPAMI 2011), whose images are "
        "licensed for non-commercial research and educational use only; so are these weights"
    ),
}


def training_data_terms(data_name: str) -> str | None:
    """The licence line of a training set named ``natural:<folder>`` whose folder is in
    ``PHOTO_FOLDER_TERMS`` (matched by the folder's last component), else None."""
    if not data_name.startswith("natural:"):
        return None
    folder = Path(data_name.removeprefix("natural:")).name.lower()
    return PHOTO_FOLDER_TERMS.get(folder)


def natural_photo_names(split: str, grayscale: bool = True) -> tuple[str, ...]:
    """Names of the photographs of a split ("train" or "test"): NATURAL_PHOTOS order, then the
    installed LOMIRI_PHOTOS in the test split (:func:`installed_lomiri_photos`).

    Grayscale sets use all 17 bundled photographs (4 train, 13 test); colour sets use only the
    RGB ones (1 train, 7 test), since replicated gray photographs are not colour images. The 14
    lomiri photographs (RGB) join both kinds of test split when installed: 27 or 21 test scenes.
    """
    is_test = normalize_split(split) == "test"
    bundled = tuple(
        name
        for name, _ in NATURAL_PHOTOS
        if (name in NATURAL_TEST_PHOTOS) == is_test and (grayscale or name in NATURAL_COLOR_PHOTOS)
    )
    return bundled + installed_lomiri_photos() if is_test else bundled


def load_natural_photo(name: str) -> np.ndarray:
    """One photograph of the natural set: uint8 (H, W) gray or (H, W, 3) RGB.

    A bundled one as shipped; a lomiri one read from LOMIRI_WALLPAPER_DIR, reduced to
    LOMIRI_MAX_SIDE pixels on its long side.

    Raises:
        ValueError: an unknown name.
        FileNotFoundError: a lomiri photograph whose package is not installed.
    """
    if name in LOMIRI_PHOTOS:
        path = LOMIRI_WALLPAPER_DIR / f"{name}.jpg"
        if not path.is_file():
            raise FileNotFoundError(
                f"{path} is missing (apt-get install {LOMIRI_PHOTOS[name].package})"
            )
        return _read_photo_file(path, LOMIRI_MAX_SIDE)
    loaders = dict(NATURAL_PHOTOS)
    if name not in loaders:
        raise ValueError(
            f"unknown photograph {name!r}; choose from {sorted(loaders) + sorted(LOMIRI_PHOTOS)}"
        )
    photo = np.asarray(loaders[name]())
    if photo.dtype != np.uint8 or photo.ndim not in (2, 3):
        raise ValueError(f"photograph {name}: unexpected {photo.dtype} {photo.shape}")
    return photo


def _read_photo_file(path: Path, max_side: int | None = None) -> np.ndarray:
    """An image file as uint8 (H, W) or (H, W, 3): EXIF orientation applied, 8-bit L or RGB.

    With ``max_side``, reduced (never enlarged) to fit max_side x max_side before anything else
    is decoded: a JPEG is decoded at 1/2, 1/4 or 1/8 scale (no less than twice the target) and
    then resized with Lanczos (PIL's ``thumbnail``).
    """
    with Image.open(path) as opened:
        if max_side is not None:
            opened.thumbnail((max_side, max_side), Image.Resampling.LANCZOS)
        return np.asarray(to_8bit_gray_or_rgb(ImageOps.exif_transpose(opened)))


def read_photo_folder(
    folder: str | Path, grayscale: bool = True
) -> tuple[list[np.ndarray], list[str]]:
    """Every image file directly in ``folder``, whole: uint8 (H, W) or (H, W, 3) photos, names.

    Files are read in sorted name order with the EXIF orientation applied and the pixels
    converted to 8-bit L or RGB (:func:`dsm_core.data.readers.to_8bit_gray_or_rgb`); a name is
    the file's stem. Colour sets (``grayscale=False``) skip gray photographs.

    Raises:
        FileNotFoundError: the folder does not exist.
        ValueError: it holds no usable photograph.
    """
    folder = Path(folder)
    if not folder.is_dir():
        raise FileNotFoundError(f"photo folder {folder} does not exist")
    paths = sorted(
        p for p in folder.iterdir() if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS
    )
    photos, names = [], []
    for path in paths:
        pixels = _read_photo_file(path)
        if grayscale or pixels.ndim == 3:
            photos.append(pixels)
            names.append(path.stem)
    if not photos:
        raise ValueError(f"no photographs in {folder} (extensions {sorted(IMAGE_EXTENSIONS)})")
    return photos, names


def natural_image_crops(
    split: str,
    resolution: int,
    num_crops: int,
    seed: int = 0,
    grayscale: bool = True,
    photo_dir: str | Path | None = None,
) -> ImageDataset:
    """Random downsampled square crops of the bundled photographs, as 8-bit images.

    With ``photo_dir``, the photographs of ``photo_dir/train/`` or ``photo_dir/test/`` (as
    BSDS500 is laid out; :func:`read_photo_folder`) join the split's bundled ones.

    Crops are spread evenly over the split's photographs (:func:`natural_photo_names`) by
    :func:`photo_crops`, which documents the crop routine. Flips are left to batch time
    (:func:`iterate_batches`).

    Args:
        split: "train" or "test" (the held-out NATURAL_TEST_PHOTOS and installed LOMIRI_PHOTOS).
        resolution: R.
        num_crops: N.
        seed: the result is a deterministic function of (split, resolution, num_crops, seed,
            grayscale).
        grayscale: 1-channel luma from all photographs, or 3-channel RGB from the colour ones.
        photo_dir: a folder with ``train/`` and ``test/`` photograph folders, or None.

    Returns:
        an ImageDataset of uint8 (N, 1 or 3, R, R); labels index ``label_names``, the source
        photographs.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    names = list(natural_photo_names(split, grayscale))
    photos = [load_natural_photo(name) for name in names]
    source = "natural"
    if photo_dir is not None:
        extra_photos, extra_names = read_photo_folder(
            Path(photo_dir) / normalize_split(split), grayscale
        )
        source = f"natural+{Path(photo_dir).name}"
        photos += extra_photos
        names += [f"{Path(photo_dir).name}/{name}" for name in extra_names]
    return photo_crops(
        photos, names, resolution, num_crops, seed, grayscale, name=f"{source}:{split}"
    )


def photo_crops(
    photos: Sequence[np.ndarray],
    names: Sequence[str],
    resolution: int,
    num_crops: int,
    seed: int = 0,
    grayscale: bool = True,
    *,
    name: str = "photo crops",
) -> ImageDataset:
    """Random multi-scale square crops of given photographs, resized to R x R, as 8-bit images.

    The crop routine of :func:`natural_image_crops`, for any photographs (e.g. ones read from
    disk at run time). Crops are spread evenly over the photographs. Each crop has a side s
    drawn log-uniformly in [R, short side of the photo] (every octave of downsampling equally
    likely) and a uniformly random position; it is resized to R x R with PIL's Lanczos filter
    (antialiased) on the 8-bit image, which rounds to uint8. Colour photos are resized in RGB and
    then converted to luma (PIL-exact), like ImageNet64's grayscale pipeline.

    Args:
        photos: uint8 (H, W) gray or (H, W, 3) RGB photographs, each with short side >= R.
        names: one name per photograph (the returned ``label_names``).
        resolution: R.
        num_crops: N.
        seed: the result is a deterministic function of (photos, resolution, num_crops, seed,
            grayscale).
        grayscale: 1-channel luma crops, or 3-channel RGB crops (a gray photo's crops are then
            replicated to three channels).
        name: the dataset's ``name``.

    Returns:
        an ImageDataset of uint8 (N, 1 or 3, R, R); labels (N,) index ``names``.
    """
    if num_crops < 1:
        raise ValueError(f"num_crops must be >= 1, got {num_crops}")
    names = tuple(names)
    if len(photos) != len(names) or not names:
        raise ValueError(f"need one name per photograph, got {len(photos)} and {len(names)}")
    too_small = [n for n, p in zip(names, photos, strict=True) if min(p.shape[:2]) < resolution]
    if too_small:
        raise ValueError(f"resolution {resolution} exceeds the short side of {too_small}")
    rng = np.random.default_rng(seed)
    photo_of = rng.permutation(np.arange(num_crops) % len(names))  # (N,) balanced over photos
    log_u = rng.random(num_crops)  # (N,) position of log(side) in [log R, log short side]
    u_x, u_y = rng.random(num_crops), rng.random(num_crops)  # (N,) crop position in [0, 1)

    channels = 1 if grayscale else 3
    crops = np.empty((num_crops, channels, resolution, resolution), dtype=np.uint8)
    for k, photo in enumerate(photos):
        image = Image.fromarray(photo)  # mode "L" or "RGB"
        height, width = photo.shape[:2]
        log_low, log_high = math.log(resolution), math.log(min(height, width))
        for i in np.flatnonzero(photo_of == k):
            side = int(round(math.exp(log_low + (log_high - log_low) * log_u[i])))
            side = min(max(side, resolution), min(height, width))
            left = int(u_x[i] * (width - side + 1))
            upper = int(u_y[i] * (height - side + 1))
            # resize(box=...) lets the Lanczos kernel read the photo just outside the box, as
            # if the whole photo were downsampled and then cropped: no edge effects at the border
            box = (left, upper, left + side, upper + side)
            crop = np.asarray(
                image.resize((resolution, resolution), Image.Resampling.LANCZOS, box=box)
            )
            crop = crop[None] if crop.ndim == 2 else crop.transpose(2, 0, 1)  # (C, R, R)
            crops[i] = rgb_to_gray(crop) if grayscale and crop.shape[0] == 3 else crop
    logger.info(
        "%s: %d crops of %dx%d from %d photographs (%s%s)",
        name,
        num_crops,
        resolution,
        resolution,
        len(names),
        ", ".join(names[:20]),
        ", ..." if len(names) > 20 else "",
    )
    return ImageDataset(
        crops,
        name=name,
        labels=photo_of,
        label_names=names,
    )
