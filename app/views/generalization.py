"""Page: do two models trained on disjoint data agree on log p? (paper Fig. 2, §3.1)."""

import numpy as np
import pandas as pd
import streamlit as st

from app import charts, components, loading
from dsm_core.analysis import compare_models, convergence_finding, read_generalization_runs
from dsm_core.images import pixels_to_tensor

RESULTS = loading.REPO_ROOT / "docs" / "results" / "fashion_generalization"

st.title("Generalization (Fig. 2)")
st.markdown(
    "Train two energy models on **disjoint** halves of the data (A and B), N images each, and "
    "compare the log p they give to the same images. **The paper** (§3.1, Fig. 2, on ImageNet64) "
    "finds that with small N the two disagree wildly (each memorizes its own images), and that "
    "as N grows their estimates converge for all images, nearly equal at N = 10⁵: the energy of "
    "an image is then a property of the data, not of the training sample."
)

st.subheader("Results made with this project (Fashion-MNIST)")
try:
    runs = read_generalization_runs(RESULTS)
except FileNotFoundError as exc:
    st.info(f"No stored results: {exc}")
    runs = []
if runs:
    finding = convergence_finding(runs)
    steps = ", ".join(
        f"{size:,}: {value:.2f}"
        for size, value in zip(finding.sizes, finding.mean_abs_diff_db, strict=True)
    )
    components.verdict(
        finding.agrees,
        f"Mean |log p_A − log p_B| in dB/dim by N ({steps}): "
        + (
            "the largest N has the smallest disagreement"
            if finding.agrees
            else "the largest N is not where the two models agree best"
        )
        + ("" if finding.monotone else " (not falling at every step)")
        + ".",
        subject="This experiment",
    )
    sizes = np.array(finding.sizes)
    st.plotly_chart(
        charts.generalization_curve(
            sizes,
            {
                "A images": np.array([run.on_a.summary.mean_abs_diff_db for run in runs]),
                "B images": np.array([run.on_b.summary.mean_abs_diff_db for run in runs]),
            },
        ),
        key="gen_curve",
    )
    size = st.select_slider("N", options=list(finding.sizes), key="gen_size")
    run = next(r for r in runs if r.size == size)
    cols = st.columns(2)
    for column, (name, result) in zip(
        cols, (("A images", run.on_a), ("B images", run.on_b)), strict=True
    ):
        with column:
            st.plotly_chart(
                charts.generalization_scatter(
                    result.logp_db_a.numpy(),
                    result.logp_db_b.numpy(),
                    title=f"N = {size:,}: {name}",
                ),
                key=f"gen_scatter_{name[0]}",
            )
            summary = result.summary
            st.caption(
                f"{summary.num_images:,} images: mean |Δ| {summary.mean_abs_diff_db:.2f}, "
                f"mean Δ {summary.mean_diff_db:+.2f} dB/dim, Pearson {summary.pearson:.3f}."
            )
    table = pd.DataFrame(
        {
            "N": np.repeat(size, len(run.on_a.logp_db_a) + len(run.on_b.logp_db_a)),
            "images": ["A"] * len(run.on_a.logp_db_a) + ["B"] * len(run.on_b.logp_db_a),
            "logp_db_model_a": np.concatenate([run.on_a.logp_db_a, run.on_b.logp_db_a]),
            "logp_db_model_b": np.concatenate([run.on_a.logp_db_b, run.on_b.logp_db_b]),
        }
    )
    components.download_csv(table, f"generalization_N{size}.csv", "gen_csv", "figure data (CSV)")
    st.caption(
        f"From `{RESULTS.relative_to(loading.REPO_ROOT)}`; make them for another data set with "
        "`python train/generalization.py --config PRESET --out DIR --sizes 10 100 1000 …`."
    )

st.subheader("Compare two model folders")
st.markdown(
    "Two models of the same image shape, e.g. trained on disjoint halves: log p of both on the "
    "test images packaged with model A."
)
bundled = [str(folder) for folder in loading.bundled_models()]
cols = st.columns(2)
folder_a = cols[0].text_input("model A folder", value=bundled[0], key="gen_folder_a")
folder_b = cols[1].text_input("model B folder", value=bundled[0], key="gen_folder_b")
if st.button("Compare", key="gen_run", type="primary"):
    try:
        bundle_a = loading.get_bundle(loading.ModelChoice(folder_a.strip()))
        bundle_b = loading.get_bundle(loading.ModelChoice(folder_b.strip()))
    except Exception as exc:  # the loader's message says which folder and why
        st.error(f"**Could not load the models.** {exc}")
        st.stop()
    if tuple(bundle_a.model.image_shape) != tuple(bundle_b.model.image_shape):
        st.error(
            f"The models take different images ({tuple(bundle_a.model.image_shape)} vs "
            f"{tuple(bundle_b.model.image_shape)}): they cannot score the same images."
        )
        st.stop()
    heldout, problem = loading.get_heldout(bundle_a)
    if heldout is None or heldout.images is None:
        st.error(f"Model A has no test images to compare on: {problem or 'no test_images.npz'}")
        st.stop()
    bar = st.progress(0.0, text="models")
    result = compare_models(
        bundle_a.model,
        bundle_b.model,
        pixels_to_tensor(heldout.images),
        progress=components.progress_callback(bar, "models"),
    )
    bar.empty()
    st.session_state["gen_result"] = ((folder_a, folder_b), result)
stored = st.session_state.get("gen_result")
if stored is not None and stored[0] == (folder_a, folder_b):
    result = stored[1]
    summary = result.summary
    st.plotly_chart(
        charts.generalization_scatter(
            result.logp_db_a.numpy(), result.logp_db_b.numpy(), title="model A vs model B"
        ),
        key="gen_pair_scatter",
    )
    st.caption(
        f"{summary.num_images:,} images: mean |Δ| {summary.mean_abs_diff_db:.2f} dB/dim, "
        f"mean Δ {summary.mean_diff_db:+.2f}, RMS {summary.rms_diff_db:.2f}, "
        f"Pearson {summary.pearson:.3f}."
    )
    table = pd.DataFrame(
        {"logp_db_model_a": result.logp_db_a.numpy(), "logp_db_model_b": result.logp_db_b.numpy()}
    )
    components.download_csv(table, "two_models.csv", "gen_pair_csv", "log p values (CSV)")
