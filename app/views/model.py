"""Page 8: which model is loaded, its card and numbers, and switching to another one."""

import streamlit as st

from app import components, loading
from dsm_core import ModelLoadError
from dsm_core.checkpoint import COMPANION_FILES

KINDS = ["Bundled", "Local folder", "Hugging Face Hub"]

st.title("Model")

choice = components.current_choice()


def _bundled_label(folder) -> str:
    return f"{folder.name} (the default)" if folder == loading.DEFAULT_MODEL_DIR else folder.name


def _load(new: loading.ModelChoice) -> None:
    try:
        loading.get_bundle(new)
    except ModelLoadError as exc:
        st.session_state["model_error"] = str(exc)
        return
    except Exception as exc:  # unreadable files the loader did not anticipate
        st.session_state["model_error"] = f"{type(exc).__name__}: {exc}"
        return
    st.session_state.pop("model_error", None)
    st.session_state[components.MODEL_CHOICE] = new
    st.session_state["model_switched"] = new.key


with st.container(border=True):
    st.subheader("Choose a model")
    kind = st.radio("source", KINDS, key="model_kind", horizontal=True)
    if kind == "Bundled":
        bundled = loading.bundled_models()
        folder = st.selectbox(
            "model shipped with DSM Explorer",
            bundled,
            key="model_bundled",
            format_func=_bundled_label,
        )
        new = loading.ModelChoice(str(folder)) if folder is not None else None
        st.caption(f"`{folder}`")
    elif kind == "Local folder":
        folder = st.text_input(
            "folder with model.safetensors + config.json", key="model_folder", value=""
        )
        new = loading.ModelChoice(folder.strip()) if folder.strip() else None
    else:
        cols = st.columns([3, 1])
        repo = cols[0].text_input("repo id (owner/name)", key="model_repo", value="")
        revision = cols[1].text_input("revision (optional)", key="model_revision", value="")
        new = loading.ModelChoice(repo.strip(), revision.strip() or None) if repo.strip() else None
    cols = st.columns([1, 1, 4])
    cols[0].button(
        "Load", key="model_load", type="primary", disabled=new is None, on_click=_load, args=(new,)
    )
    cols[1].button(
        "Reload from disk", key="model_reload", on_click=loading.forget_model, args=(choice,)
    )
    if "model_error" in st.session_state:
        st.error(
            f"**Could not load that model; still using the previous one.** "
            f"{st.session_state['model_error']}"
        )
    elif st.session_state.get("model_switched"):
        st.success(f"Loaded {st.session_state['model_switched']}: every page now uses it.")

choice = components.current_choice()
bundle = components.require_bundle()
model = bundle.model
metadata = getattr(model, "metadata", {}) or {}
metrics = bundle.metrics or {}
c, h, w = model.image_shape

st.subheader("The loaded model")
for problem in bundle.problems:
    st.warning(problem)
facts = {
    "source": f"{bundle.kind}: `{choice.source}`"
    + (f" @ `{choice.revision}`" if choice.revision else ""),
    "folder": f"`{bundle.folder}`",
    "images": f"{c} × {h} × {w} ({'grayscale' if c == 1 else 'colour'}), d = {model.d}",
    "parameters": f"{bundle.num_params:,}",
    "training steps": str(metadata.get("steps", "unknown")),
    "log normalisation K": f"{getattr(model, 'log_norm_nats', float('nan')):.2f} nats",
}
data = metadata.get("data")
if isinstance(data, dict):
    facts["training data"] = data.get("description") or data.get("name") or str(data)
elif data:
    facts["training data"] = str(data)
for key, label, unit in (
    ("nll_bits_per_dim", "test NLL (8-bit, +8)", "bits/dim"),
    ("entropy_db", "entropy estimate −E[log p]", "dB/dim"),
    ("gumbel_loc_db", "Gumbel location", "dB/dim"),
    ("gumbel_scale_db", "Gumbel scale", "dB/dim"),
    ("num_images", "held-out images", ""),
):
    value = metrics.get(key)
    if value is not None:
        facts[label] = f"{value:.3f} {unit}" if isinstance(value, float) else f"{value} {unit}"
if metrics.get("provisional"):
    facts["status"] = ":orange[provisional: packaged before training finished]"
st.markdown("\n".join(f"- **{k}:** {v}" for k, v in facts.items()))
psnr = metrics.get("psnr_db") or {}
if psnr:
    st.markdown(
        "**Denoising** (input PSNR → output PSNR, dB): "
        + ", ".join(f"{k} → {v:.1f}" for k, v in psnr.items() if v is not None)
    )
present = [name for name in COMPANION_FILES if (bundle.folder / name).is_file()]
missing = [name for name in COMPANION_FILES if name not in present]
st.caption(
    "Companion files: "
    + (", ".join(present) or "none")
    + (f"; missing: {', '.join(missing)}" if missing else "")
)

st.subheader("Model card")
if bundle.card:
    with st.container(border=True):
        # the card's headings, two levels down, so they sit under this page's own
        card = "\n".join(
            "##" + line if line.startswith("#") else line for line in bundle.card.splitlines()
        )
        st.markdown(card)
else:
    st.info("This model folder has no README.md.")
