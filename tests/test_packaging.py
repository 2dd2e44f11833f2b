"""dsm_core.packaging and train/package_model.py: companion files written, read back, refused."""

import json
import sys
from pathlib import Path

import numpy as np
import pytest
import torch

import dsm_core as dc
from dsm_core.packaging import (
    CompanionFileError,
    load_heldout,
    model_card,
    package_model,
    rank_indices,
    read_test_images,
    read_test_logp,
)

ROOT = Path(__file__).resolve().parents[1]


@pytest.fixture
def images() -> np.ndarray:
    rng = np.random.default_rng(0)
    low = rng.integers(0, 256, size=(12, 1, 4, 4), dtype=np.uint8)
    return np.repeat(np.repeat(low, 4, axis=2), 4, axis=3)  # (12, 1, 16, 16)


def test_package_writes_consistent_files(tmp_path, tiny_model, images) -> None:
    source = dc.save_model(tiny_model, tmp_path / "src")
    out = tmp_path / "out"
    scenes = np.arange(12) % 3  # the source photograph of each image
    result = package_model(
        tiny_model,
        images,
        out,
        source_folder=source,
        labels=scenes,
        num_sample_images=5,
        data_description="toy",
    )
    for name in (
        "model.safetensors",
        "config.json",
        "test_logp_db.npz",
        "test_images.npz",
        "metrics.json",
        "README.md",
    ):
        assert (out / name).is_file(), name
    expected = dc.logp_db(tiny_model, dc.images.pixels_to_tensor(images)).double().numpy()
    logp, indices = read_test_logp(out)
    np.testing.assert_allclose(logp, expected, rtol=1e-6)
    assert np.array_equal(indices, np.arange(12))
    sample, sample_indices, sample_logp = read_test_images(out, tiny_model.image_shape)
    assert sample.shape == (5, 1, 16, 16)
    assert logp.argmax() in sample_indices and logp.argmin() in sample_indices  # extremes kept
    np.testing.assert_allclose(sample_logp, logp[sample_indices])
    assert np.array_equal(sample, images[sample_indices])
    with np.load(out / "test_images.npz") as stored:
        assert np.array_equal(stored["labels"], scenes[sample_indices])
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 12
    assert metrics["entropy_db"] == pytest.approx(-expected.mean())
    assert metrics["gumbel_loc_db"] == pytest.approx(dc.fit_gumbel(expected).loc)
    bound = dc.analysis.dequantized_nll_bits_per_dim(
        tiny_model,
        torch.from_numpy(images),
        num_draws=1,
        generator=torch.Generator().manual_seed(0),
    )
    assert metrics["nll_bits_per_dim_dequantized"] == pytest.approx(bound.mean().item())
    assert "test NLL bound (dequantized)" in (out / "README.md").read_text()
    assert result.wrote_metrics and result.wrote_card
    assert dc.load_model(out).log_norm_nats == tiny_model.log_norm_nats


def test_existing_card_and_metrics_are_kept_unless_forced(tmp_path, tiny_model, images) -> None:
    out = tmp_path / "out"
    out.mkdir()
    (out / "README.md").write_text("my card")
    (out / "metrics.json").write_text('{"nll_bits_per_dim": 1.0}')
    result = package_model(tiny_model, images, out)
    assert not result.wrote_card and not result.wrote_metrics
    assert (out / "README.md").read_text() == "my card"
    assert json.loads((out / "metrics.json").read_text()) == {"nll_bits_per_dim": 1.0}
    package_model(tiny_model, images, out, force=True, provisional=True)
    assert "Provisional" in (out / "README.md").read_text()
    assert json.loads((out / "metrics.json").read_text())["provisional"] is True


def test_load_heldout_fallbacks_and_refusals(tmp_path, tiny_model, images) -> None:
    out = tmp_path / "m"
    package_model(tiny_model, images, out, num_sample_images=4)
    heldout = load_heldout(out, tiny_model.image_shape)
    assert heldout.logp_db.shape == (12,) and heldout.num_images == 4
    # images without logp_db: looked up by index in test_logp_db.npz
    with np.load(out / "test_images.npz") as archive:
        np.savez(out / "test_images.npz", images=archive["images"], indices=archive["indices"])
    again = load_heldout(out, tiny_model.image_shape)
    np.testing.assert_allclose(again.image_logp_db, heldout.image_logp_db)
    # no test_logp_db.npz and no log p in the images: refused
    (out / "test_logp_db.npz").unlink()
    with pytest.raises(CompanionFileError, match="no test_logp_db.npz"):
        load_heldout(out)
    with pytest.raises(CompanionFileError, match="model needs"):
        load_heldout(out, (1, 32, 32))
    np.savez(out / "test_logp_db.npz", values=np.zeros(3))
    with pytest.raises(CompanionFileError, match="no 'logp_db'"):
        read_test_logp(out)
    np.savez(out / "test_images.npz", images=np.zeros((2, 16, 16), dtype=np.float32))
    with pytest.raises(CompanionFileError, match="uint8"):
        read_test_images(out)
    (out / "test_logp_db.npz").write_bytes(b"not a zip")
    with pytest.raises(CompanionFileError, match="unreadable"):
        read_test_logp(out)


def test_rank_indices() -> None:
    logp = np.array([3.0, -1.0, 7.0, 0.0, 5.0])
    assert rank_indices(logp, 2, "highest").tolist() == [2, 4]
    assert rank_indices(logp, 2, "lowest").tolist() == [1, 3]
    assert rank_indices(logp, 3, "even").tolist() == [1, 0, 2]
    assert rank_indices(logp, 10, "even").tolist() == [1, 3, 0, 4, 2]
    with pytest.raises(ValueError):
        rank_indices(logp, 2, "middle")  # type: ignore[arg-type]


def test_package_script_random_preset(tmp_path) -> None:
    sys.path.insert(0, str(ROOT / "train"))
    try:
        import package_model as script
    finally:
        sys.path.remove(str(ROOT / "train"))
    out = tmp_path / "random"
    code = script.main(
        [
            "--preset",
            "tiny",
            "--data",
            "natural",
            "--out",
            str(out),
            "--num-images",
            "10",
            "--psnr-images",
            "4",
            "--num-sample-images",
            "6",
        ]
    )
    assert code == 0
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["num_images"] == 10 and metrics["provisional"] is True
    assert set(metrics["psnr_db"]) == {"-30", "-15", "0", "15", "30", "45", "60"}
    heldout = load_heldout(out, (1, 16, 16))
    assert heldout.num_images == 6
    model = dc.load_model(out)
    x = dc.images.pixels_to_tensor(heldout.images)
    np.testing.assert_allclose(
        heldout.image_logp_db, dc.logp_db(model, x).double().numpy(), rtol=1e-6
    )


@pytest.mark.parametrize(
    ("data", "terms"),
    [("natural:/data/BSDS500", True), ("natural:/data/my_photos", False), ("fashion-mnist", False)],
)
def test_card_names_the_training_data_and_its_licence(tiny_model, data, terms) -> None:
    tiny_model.metadata = {"data": {"name": data, "photographs": ["a", "b"]}, "steps": 3}
    card = model_card(tiny_model, {}, "held-out crops", provisional=False)
    assert f"| training data | `{data}`, crops of 2 photographs |" in card
    assert ("non-commercial research and educational use only" in card) is terms


def test_card_credits_the_lomiri_test_photographs(tiny_model) -> None:
    names = ["camera", "seeding_by_Clements_Engelhardt", "Kleiber_by_Lukas_Baubkus"]
    card = model_card(tiny_model, {}, "held-out crops", False, test_photographs=names)
    assert (
        "| test photographs | 3; 2 from Debian's lomiri-wallpapers, credited below: camera, "
        in card
    )
    assert (
        "| seeding_by_Clements_Engelhardt.jpg | © 2018 Clemens Engelhardt | "
        "[CC0-1.0](https://creativecommons.org/publicdomain/zero/1.0/) | lomiri-wallpapers-16.04 |"
    ) in card
    assert (
        "| Kleiber_by_Lukas_Baubkus.jpg | © 2021 Lukas Baubkus | "
        "[CC-BY-SA-3.0](https://creativecommons.org/licenses/by-sa/3.0/) | "
        "lomiri-wallpapers-20.04 |"
    ) in card
    bundled_only = model_card(tiny_model, {}, "held-out crops", False, test_photographs=["moon"])
    assert "| test photographs | 1: moon |" in bundled_only and "credited" not in bundled_only
    assert "test photographs" not in model_card(tiny_model, {}, "digits", False)


def test_packaged_test_sample_records_and_credits_its_photographs(
    tmp_path, fake_lomiri_wallpapers
) -> None:
    """With lomiri-wallpapers installed, ``package_model.py --data natural`` cuts test crops from
    them too: test_images.npz names every source photograph and the card credits them."""
    fake_lomiri_wallpapers({"Wine_by_Jakkub_Mede": (64, 96), "free_by_Peter_Nerlich": (80, 60)})
    sys.path.insert(0, str(ROOT / "train"))
    try:
        import package_model as script
    finally:
        sys.path.remove(str(ROOT / "train"))
    out = tmp_path / "random"
    arguments = ["--preset", "tiny", "--data", "natural", "--out", str(out), "--num-images", "30"]
    assert script.main([*arguments, "--psnr-images", "0", "--num-sample-images", "30"]) == 0
    with np.load(out / "test_images.npz") as stored:
        names, labels = stored["label_names"].tolist(), stored["labels"]
    assert names == [*dc.data.NATURAL_TEST_PHOTOS, "Wine_by_Jakkub_Mede", "free_by_Peter_Nerlich"]
    assert np.bincount(labels).tolist() == [2] * 15  # every scene in the sample
    card = (out / "README.md").read_text()
    assert "| test photographs | 15; 2 from Debian's lomiri-wallpapers, credited below:" in card
    assert "| Wine_by_Jakkub_Mede.jpg | © 2018 Jakub Mede | [CC-BY-4.0](" in card
    assert "| free_by_Peter_Nerlich.jpg | © 2018 Peter Nerlich | [CC-BY-SA-4.0](" in card
