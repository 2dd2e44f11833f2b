"""Shared page pieces: the active model, the current image, image display, progress bars."""

import io
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd
import streamlit as st
import torch
from PIL import Image

import dsm_core as dc
from app import loading
from dsm_core.analysis import CHECK_ODE_PROBES, CHECK_ODE_STEPS, OneShotCheck, one_shot_check
from dsm_core.images import (
    ImageLoadError,
    fit_to_model,
    pixels_to_tensor,
    tensor_to_pixels,
    thumbnail,
)
from dsm_core.packaging import HeldoutSet

PROBE_PAGE = "views/probe.py"
MODEL_PAGE = "views/model.py"
# Session-state keys shared by pages (widget keys are per page and start with the page name).
MODEL_CHOICE = "model_choice"
IMAGE_INDEX = "image_index"  # position in the held-out sample images
IMAGE_CHOICE = "image_choice"  # "test" or "upload"
UPLOAD_BYTES, UPLOAD_NAME = "upload_bytes", "upload_name"
UPLOAD_ORIGIN = "upload_origin"  # the page an image was sent from ("probe this"), if not uploaded
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
    st.session_state.pop(UPLOAD_ORIGIN, None)
    st.session_state[UPLOAD_ARRAY_INDEX] = 0
    st.session_state[IMAGE_CHOICE] = "upload"


def forget_upload() -> None:
    """Stop using the upload on every page of this session."""
    for key in (UPLOAD_BYTES, UPLOAD_NAME, UPLOAD_ORIGIN):
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
    shown = display_pixels(pixels, size)
    # PNG: JPEG (Streamlit's choice for opaque images) would blur the repeated pixels
    st.image(shown, caption=caption, width=int(shown.shape[1]), output_format="PNG")


def preview(pixels: np.ndarray, size: int = 256) -> np.ndarray:
    """An upload for display at about ``size`` pixels: a small image enlarged by pixel
    repetition (sharp, as the model sees pixels), a large one reduced (Lanczos)."""
    if max(pixels.shape[1:]) < size:
        return display_pixels(pixels, size)
    return thumbnail(pixels, size)


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
    # Every run, not once: the shared choice may have changed on another page since this page's
    # widgets were last drawn (their own on_change keeps the shared choice up to date).
    wanted = "my upload" if st.session_state[IMAGE_CHOICE] == "upload" else "test set"
    st.session_state[source_key] = wanted if wanted in options else options[0]
    if has_tests:
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


# ------------------------------------------------------------------------ claims and findings


def verdict(agrees: bool, measured: str, subject: str = "This model") -> None:
    """One line: whether ``subject`` agrees with the paper's finding, then what was measured."""
    head = (
        f":green[**{subject} agrees with the paper.**]"
        if agrees
        else f":orange[**{subject} disagrees with the paper.**]"
    )
    st.markdown(f"{head} {measured}")


# ------------------------------------------------------------------- moving work between pages


def png_bytes(pixels: np.ndarray) -> bytes:
    """uint8 (C, H, W), C = 1 or 3 -> PNG file bytes."""
    image = Image.fromarray(pixels[0] if pixels.shape[0] == 1 else pixels.transpose(1, 2, 0))
    buffer = io.BytesIO()
    image.save(buffer, format="PNG")
    return buffer.getvalue()


def send_to_probe(pixels: np.ndarray, name: str, origin: str) -> None:
    """Make an image (uint8 (C, H, W)) the current image of every page and open it on Probe.

    It takes the upload's place (a PNG, so 8-bit and clipped to [0, 1]); ``origin`` names the
    page it came from.
    """
    st.session_state[UPLOAD_BYTES] = png_bytes(pixels)
    st.session_state[UPLOAD_NAME] = f"{name}.png"
    st.session_state[UPLOAD_ORIGIN] = origin
    st.session_state[UPLOAD_ARRAY_INDEX] = 0
    st.session_state[IMAGE_CHOICE] = "upload"
    st.switch_page(PROBE_PAGE)


def probe_button(pixels: np.ndarray, name: str, origin: str, key: str) -> None:
    """A "Probe this" button that sends the image to the Probe page."""
    if st.button("Probe this", key=key, help="Open this image on *Probe an image* (as a PNG)."):
        send_to_probe(pixels, name, origin)


def download_png(pixels: np.ndarray, file_name: str, key: str, label: str = "PNG") -> None:
    """A download button for uint8 images (C, H, W) or (N, C, H, W) (side by side)."""
    if pixels.ndim == 4:
        pixels = np.concatenate(list(pixels), axis=2)
    st.download_button(
        label,
        png_bytes(pixels),
        file_name=file_name,
        mime="image/png",
        key=key,
        icon=":material/download:",
    )


def download_csv(frame: pd.DataFrame, file_name: str, key: str, label: str = "CSV") -> None:
    """A download button for a table (log p values, figure data)."""
    st.download_button(
        label,
        frame.to_csv(index=False).encode(),
        file_name=file_name,
        mime="text/csv",
        key=key,
        icon=":material/download:",
    )


# --------------------------------------------------------------------- one-shot vs the ODE


def ode_check_panel(
    bundle: loading.ModelBundle,
    heldout: HeldoutSet | None,
    x: torch.Tensor,
    labels: Sequence[str],
    key: str,
) -> OneShotCheck | None:
    """A button that puts the probability-flow ODE's log p (eq. 14) next to the one-shot value of
    images x (B, C, H, W), flagging disagreements; the result stays until x changes."""
    model = bundle.model
    evaluations = 2 + 4 * CHECK_ODE_STEPS  # one Heun step to t_min, then RK4
    state_key = f"{key}_ode_check"
    digest = loading.digest(x.detach().cpu().numpy())
    if st.button(
        "Check with the probability-flow ODE",
        key=f"{key}_ode_run",
        help="The ODE log p uses only the scores (∇U), not the energy's value: it checks the "
        f"one-shot number independently (RK4, {CHECK_ODE_STEPS} log-t steps, "
        f"{CHECK_ODE_PROBES} Hutchinson probes; {evaluations} score evaluations per image).",
    ):
        bar = st.progress(0.0, text="ODE")
        spread = loading.one_shot_spread(
            bundle,
            heldout,
            progress_callback(bar, "test images (once per model) — ODE steps"),
        )
        check = one_shot_check(
            model,
            x,
            test_spread_db=spread,
            generator=torch.Generator().manual_seed(0),
            progress=progress_callback(bar, "ODE steps"),
        )
        bar.empty()
        st.session_state[state_key] = (digest, check)
    stored = st.session_state.get(state_key)
    if stored is None or stored[0] != digest:
        st.caption(
            "The one-shot log p is only as good as the energy's consistency across noise levels: "
            "check it with the probability-flow ODE (the first check of a model also measures "
            f"how far the two differ on {loading.SPREAD_NUM_IMAGES} of its test images)."
        )
        return None
    check = stored[1]
    disagree = check.disagrees
    table = pd.DataFrame(
        {
            "image": list(labels),
            "one-shot (dB/dim)": check.one_shot_db,
            "ODE (dB/dim)": check.ode_db,
            "ODE ± s.e.": check.ode_stderr_db,
            "one-shot − ODE": check.difference_db,
            "tolerance": check.tolerance_db,
            "check": [
                "ODE diverged" if not np.isfinite(ode) else "disagree" if flag else "agree"
                for ode, flag in zip(check.ode_db, disagree, strict=True)
            ],
            "pixels outside [0, 1] (by > 1/255)": check.outside,
        }
    )
    st.dataframe(
        table,
        hide_index=True,
        key=f"{key}_ode_table",
        column_config={
            name: st.column_config.NumberColumn(format="%+.2f")
            for name in ("one-shot (dB/dim)", "ODE (dB/dim)", "one-shot − ODE")
        }
        | {
            name: st.column_config.NumberColumn(format="%.2f")
            for name in ("ODE ± s.e.", "tolerance")
        },
    )
    num = int(disagree.sum())
    if num:
        st.warning(
            f"{num} of {len(disagree)}: the one-shot log p and the ODE disagree by more than the "
            "tolerance: the energy's value there is not supported by its scores; trust neither "
            "number alone."
        )
    st.caption(
        "Tolerance: the larger of 3 × the ODE's standard error and "
        f"{check.test_spread_db:.2f} dB/dim, the largest |one-shot − ODE| on "
        f"{loading.SPREAD_NUM_IMAGES} test images of this model."
        + (
            f" {int(check.outside.sum())} image(s) have pixels more than a grey level outside "
            "[0, 1], where the model saw no data."
            if check.outside.any()
            else ""
        )
    )
    return check
