"""Shared page pieces: the active model, the current image, image display, progress bars."""

import time
from collections.abc import Callable
from dataclasses import dataclass

import numpy as np
import streamlit as st
import torch

import dsm_core as dc
from app import loading
from dsm_core.images import ImageLoadError, fit_to_model, pixels_to_tensor, tensor_to_pixels
from dsm_core.packaging import HeldoutSet

PROBE_PAGE = "views/probe.py"
MODEL_PAGE = "views/model.py"
# Session-state keys shared by pages (widget keys are per page and start with the page name).
MODEL_CHOICE = "model_choice"
IMAGE_INDEX = "image_index"  # position in the held-out sample images
IMAGE_CHOICE = "image_choice"  # "test" or "upload"
UPLOAD_BYTES, UPLOAD_NAME = "upload_bytes", "upload_name"
UPLOAD_FIT, UPLOAD_SMALL, UPLOAD_ARRAY_INDEX = "upload_fit", "upload_small", "upload_array_index"


def init_state() -> None:
    """Defaults of the cross-page session state (called by the router on every run)."""
    st.session_state.setdefault(MODEL_CHOICE, loading.initial_choice())
    st.session_state.setdefault(IMAGE_INDEX, 0)
    st.session_state.setdefault(IMAGE_CHOICE, "test")
    st.session_state.setdefault(UPLOAD_FIT, "resize")
    st.session_state.setdefault(UPLOAD_SMALL, "pad")
    st.session_state.setdefault(UPLOAD_ARRAY_INDEX, 0)


def has_upload() -> bool:
    """Whether this session has an upload in use (an empty file counts: it is reported)."""
    return UPLOAD_NAME in st.session_state


def upload_changed(widget_key: str) -> None:
    """The uploader's on_change: a new file replaces the upload, removing it forgets it."""
    upload = st.session_state.get(widget_key)
    if upload is None:
        forget_upload()
        return
    st.session_state[UPLOAD_BYTES] = upload.getvalue()
    st.session_state[UPLOAD_NAME] = upload.name
    st.session_state[UPLOAD_ARRAY_INDEX] = 0
    st.session_state[IMAGE_CHOICE] = "upload"


def forget_upload() -> None:
    """Stop using the upload on every page of this session."""
    for key in (UPLOAD_BYTES, UPLOAD_NAME):
        st.session_state.pop(key, None)
    st.session_state[UPLOAD_ARRAY_INDEX] = 0
    st.session_state[IMAGE_CHOICE] = "test"


def current_choice() -> loading.ModelChoice:
    init_state()
    return st.session_state[MODEL_CHOICE]


def require_bundle() -> loading.ModelBundle:
    """The active model, or an error in the page (and the page stops there)."""
    choice = current_choice()
    try:
        return loading.get_bundle(choice)
    except dc.ModelLoadError as exc:
        st.error(f"**The model could not be loaded.** {exc}")
        st.info("Choose another model on the **Model** page (the app keeps running).")
        st.page_link(MODEL_PAGE, label="Go to the Model page", icon=":material/settings:")
        st.stop()
    except Exception as exc:  # a broken file the loader did not anticipate
        st.error(f"**The model could not be loaded** ({type(exc).__name__}: {exc}).")
        st.page_link(MODEL_PAGE, label="Go to the Model page", icon=":material/settings:")
        st.stop()


def require_energy(bundle: loading.ModelBundle) -> None:
    if not bundle.is_energy:
        st.error(
            "This model is a plain score network (no energy): it can denoise and sample, but it "
            "has no log p. Load an energy model on the Model page."
        )
        st.stop()


def heldout_or_warn(bundle: loading.ModelBundle) -> HeldoutSet | None:
    """The held-out set, or None after a warning saying why it is unavailable."""
    heldout, problem = loading.get_heldout(bundle)
    if heldout is None:
        st.warning(f"No test-set log p for this model: {problem}")
    return heldout


# ----------------------------------------------------------------------------------- display


def display_pixels(pixels: np.ndarray, size: int = 160) -> np.ndarray:
    """uint8 (C, H, W) -> (H', W'[, 3]) enlarged by pixel repetition to about ``size`` pixels.

    Browsers smooth small images when scaling them up; repeating pixels keeps them sharp.
    """
    c, h, w = pixels.shape
    factor = max(1, size // max(h, w))
    image = np.repeat(np.repeat(pixels, factor, axis=1), factor, axis=2)
    return image[0] if c == 1 else image.transpose(1, 2, 0)


def display_tensor(x: torch.Tensor, size: int = 160) -> np.ndarray:
    """A float image (C, H, W) in [0, 1] (clipped) for st.image."""
    return display_pixels(tensor_to_pixels(x), size)


def show_image(pixels: np.ndarray, caption: str | None = None, size: int = 160) -> None:
    st.image(display_pixels(pixels, size), caption=caption, width=size)


def fmt_db(value: float) -> str:
    return f"{value:+.2f} dB/dim"


# ------------------------------------------------------------------------------ progress bars


def progress_callback(bar, label: str) -> Callable[[int, int], None]:
    """``progress(done, total)`` updating a st.progress bar at most ~10 times a second."""
    last = [0.0]

    def update(done: int, total: int) -> None:
        now = time.perf_counter()
        if done >= total or now - last[0] > 0.1:
            last[0] = now
            fraction = min(max(done / max(total, 1), 0.0), 1.0)
            bar.progress(fraction, text=f"{label}: {done}/{total}")

    return update


# ----------------------------------------------------------------------------- current image


@dataclass(frozen=True)
class CurrentImage:
    """The image a page works on: uint8 pixels in the model's shape, a label and a digest."""

    pixels: np.ndarray
    label: str
    digest: str
    notes: tuple[str, ...] = ()

    def tensor(self) -> torch.Tensor:
        """float32 (1, C, H, W) in [0, 1]."""
        return pixels_to_tensor(self.pixels[None])


def test_image(heldout: HeldoutSet, position: int) -> CurrentImage:
    position = int(np.clip(position, 0, heldout.num_images - 1))
    pixels = heldout.images[position]
    index = int(heldout.image_indices[position])
    return CurrentImage(pixels, f"test image #{position} (dataset index {index})", "")


def uploaded_image(bundle: loading.ModelBundle) -> CurrentImage | None:
    """The user's upload fitted to the model, or None; shows the error if it cannot be used."""
    if not has_upload():
        return None
    name = st.session_state[UPLOAD_NAME]
    try:
        decoded = loading.decode(
            st.session_state[UPLOAD_BYTES], name, int(st.session_state[UPLOAD_ARRAY_INDEX])
        )
        fitted = fit_to_model(
            decoded.pixels,
            tuple(bundle.model.image_shape),
            fit=st.session_state[UPLOAD_FIT],
            small=st.session_state[UPLOAD_SMALL],
        )
    except ImageLoadError as exc:
        st.error(f"**{name}** cannot be used: {exc}")
        return None
    return CurrentImage(
        fitted.pixels, f"upload {name}", loading.digest(fitted.pixels), decoded.notes + fitted.notes
    )


def with_digest(image: CurrentImage) -> CurrentImage:
    if image.digest:
        return image
    return CurrentImage(image.pixels, image.label, loading.digest(image.pixels), image.notes)


def image_picker(
    bundle: loading.ModelBundle, heldout: HeldoutSet | None, prefix: str, label: str = "Image"
) -> CurrentImage:
    """A compact chooser (test-set position, or the upload) synced with the Probe page.

    Widget keys: ``{prefix}_from`` (radio, only when an upload exists) and ``{prefix}_index``.
    Stops the page with a message when there is no image at all.
    """
    has_tests = heldout is not None and heldout.images is not None
    uploaded = has_upload()
    if not has_tests and not uploaded:
        st.info("No image yet: upload one on the **Probe an image** page.")
        st.page_link(PROBE_PAGE, label="Go to Probe an image", icon=":material/image_search:")
        st.stop()
    options = (["test set"] if has_tests else []) + (["my upload"] if uploaded else [])
    source_key, index_key = f"{prefix}_from", f"{prefix}_index"
    wanted = "my upload" if st.session_state[IMAGE_CHOICE] == "upload" else "test set"
    if source_key not in st.session_state or st.session_state[source_key] not in options:
        st.session_state[source_key] = wanted if wanted in options else options[0]
    if has_tests and index_key not in st.session_state:
        st.session_state[index_key] = min(
            int(st.session_state[IMAGE_INDEX]), heldout.num_images - 1
        )

    def sync() -> None:
        st.session_state[IMAGE_CHOICE] = (
            "upload" if st.session_state.get(source_key) == "my upload" else "test"
        )
        if index_key in st.session_state:
            st.session_state[IMAGE_INDEX] = int(st.session_state[index_key])

    columns = st.columns([2, 2, 3])
    with columns[0]:
        source = st.radio(f"{label} from", options, key=source_key, horizontal=True, on_change=sync)
    if source == "test set":
        with columns[1]:
            position = st.number_input(
                f"test image (0–{heldout.num_images - 1})",
                min_value=0,
                max_value=heldout.num_images - 1,
                step=1,
                key=index_key,
                on_change=sync,
            )
        image = with_digest(test_image(heldout, int(position)))
    else:
        image = uploaded_image(bundle)
        if image is None:
            st.stop()
    with columns[2]:
        st.caption(f"Working on **{image.label}**. Browse or upload on *Probe an image*.")
    return image
