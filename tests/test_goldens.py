"""Golden numbers: fixed outputs of a seeded tiny model at explicit settings, fp32, one thread.

They pin behaviour across refactors: a change that moves code must leave every number equal (to
float rounding). A change that alters behaviour on purpose updates the numbers it moves in the same
commit and says why. Regenerate with ``PYTHONPATH=. python tests/test_goldens.py``.
"""

import json
from pathlib import Path

import pytest
import torch

import dsm_core as dc
from dsm_core.analysis import denoising_psnr, mse_nll_nats, ode_nll_nats, sample, sde_nll_nats
from dsm_core.evaluation import evaluate_model
from dsm_core.packaging import package_model
from dsm_core.train_config import load_config_file
from dsm_core.training import train

REPO = Path(__file__).resolve().parent.parent
REL = 1e-6  # fp32 on one thread: only float rounding may differ


def _model() -> dc.EnergyModel:
    torch.manual_seed(0)
    model = dc.build_energy_model("tiny").eval()
    model.log_norm_nats = 100.0
    return model


def _images() -> torch.Tensor:
    """Eight smooth 16x16 grayscale images in [0, 1], (8, 1, 16, 16)."""
    low = torch.rand(8, 1, 4, 4, generator=torch.Generator().manual_seed(0))
    return torch.nn.functional.interpolate(low, size=16, mode="bilinear", align_corners=False)


def _gen(seed: int = 0) -> torch.Generator:
    return torch.Generator().manual_seed(seed)


def _summary(images: torch.Tensor) -> list[float]:
    """Mean, mean square and two pixels of a batch of images."""
    flat = images.double().flatten()
    return [flat.mean().item(), flat.square().mean().item(), flat[0].item(), flat[-1].item()]


def compute_analysis() -> dict[str, list[float]]:
    model, x = _model(), _images()
    levels = denoising_psnr(model, x, time_loss=True, generator=_gen(), batch_size=4)
    ode_args = dict(num_steps=4, num_probes=2, generator=_gen())
    return {
        "logp_db_t1e-3": dc.logp_db(model, x, t=1e-3).tolist(),
        "logp_db_default_t": dc.logp_db(model, x).tolist(),
        "nll_bits_per_dim": dc.nll_bits_per_dim(model, x).tolist(),
        "eval_psnr_out_db": levels.psnr_out_db.tolist(),
        "eval_time_loss": levels.time_loss.tolist(),
        "denoising_psnr_out_db": denoising_psnr(model, x, generator=_gen()).psnr_out_db.tolist(),
        "d_eff": dc.effective_dimensionality(
            model, x[:4], [1e-2, 1e-1, 1.0], num_noise=2, generator=_gen()
        )
        .flatten()
        .tolist(),
        "ode_nll_rk4": ode_nll_nats(model, x[:2], **ode_args).nll_nats.tolist(),
        "ode_nll_heun": ode_nll_nats(
            model, x[:2], solver="heun", num_steps=4, num_probes=2, generator=_gen()
        ).nll_nats.tolist(),
        "mse_nll": mse_nll_nats(
            model, x[:2], num_points=5, num_noise=2, generator=_gen()
        ).nll_nats.tolist(),
        "sde_nll": sde_nll_nats(
            model, x[:2], num_steps=6, num_paths=2, generator=_gen()
        ).nll_nats.tolist(),
        "sample_ode": _summary(sample(model, 2, method="ode", num_steps=4, generator=_gen())),
        "sample_reverse_sde": _summary(
            sample(model, 2, method="reverse_sde", num_steps=4, generator=_gen())
        ),
        "sample_langevin": _summary(
            sample(model, 2, method="langevin", num_steps=2, steps_per_level=2, generator=_gen())
        ),
    }


def compute_metrics(folder: Path) -> dict[str, list[float]]:
    """The two producers of metrics.json: train/evaluate.py's and package_model's."""
    model, pixels = _model(), (_images() * 255).round()
    x = pixels / 255  # on the 8-bit grid, so the dequantization bound is computed
    evaluated = evaluate_model(model, x, psnr_num_images=4, seed=0, batch_size=4).metrics()
    pixels = pixels.to(torch.uint8).numpy()
    packaged = package_model(model, pixels, folder, psnr_num_images=4, seed=0, batch_size=4)
    return {
        "evaluate_metrics": [
            evaluated["nll_bits_per_dim"],
            evaluated["entropy_db"],
            evaluated["gumbel_loc_db"],
            evaluated["nll_bits_per_dim_dequantized"],
            *evaluated["psnr_db"].values(),
        ],
        "package_metrics": [
            packaged.metrics["nll_bits_per_dim"],
            packaged.metrics["gumbel_scale_db"],
            packaged.metrics["nll_bits_per_dim_dequantized"],
            *packaged.metrics["psnr_db"].values(),
        ],
    }


def compute_training(run_dir: Path) -> dict[str, list[float]]:
    overrides = {
        "num_steps": 20,
        "batch_size": 8,
        "log_every_steps": 1,
        "eval_every_steps": 20,
        "eval_num_images": 8,
        "eval_batch_size": 8,
        "checkpoint_every_steps": 20,
    }
    cfg = load_config_file(REPO / "train" / "configs" / "tiny_cpu.json", overrides)
    train(cfg, run_dir, progress=False)
    records = [json.loads(line) for line in (run_dir / "log.jsonl").read_text().splitlines()]
    steps = [r for r in records if r["kind"] == "train"]
    (evaluation,) = [r for r in records if r["kind"] == "eval"]
    (checkpoint,) = [r for r in records if r["kind"] == "checkpoint"]
    return {
        "train_loss": [r["loss"] for r in steps],
        "train_time_loss": [r["time_loss"] for r in steps],
        "eval": [
            evaluation["loss"],
            evaluation["space_loss"],
            evaluation["time_loss"],
            evaluation["nll_bits_per_dim"],
            *evaluation["psnr_out_db"].values(),
        ],
        "export_log_norm_nats": [checkpoint["log_norm_nats"]],
    }


GOLDEN: dict[str, list[float]] = {
    "logp_db_t1e-3": [
        -1.695168375968933,
        -1.6959702968597412,
        -1.6947166919708252,
        -1.6949342489242554,
        -1.6940523386001587,
        -1.6954258680343628,
        -1.69733464717865,
        -1.696408987045288,
    ],
    "logp_db_default_t": [
        -1.6294461488723755,
        -1.6482127904891968,
        -1.6082066297531128,
        -1.6125062704086304,
        -1.578410267829895,
        -1.6284548044204712,
        -1.6918296813964844,
        -1.6646901369094849,
    ],
    "nll_bits_per_dim": [
        8.541290283203125,
        8.547524452209473,
        8.534235000610352,
        8.535662651062012,
        8.524336814880371,
        8.540961265563965,
        8.562013626098633,
        8.552997589111328,
    ],
    "eval_psnr_out_db": [
        -31.092154606720406,
        -22.465375177307138,
        -15.243821584630483,
        -7.551088167566915,
        0.06361803399945075,
        7.328988431567229,
        14.757061201283289,
        22.614157104784457,
        29.889834472324917,
        37.57397433625772,
        45.16468759454871,
        52.45111528125281,
        59.99005555306938,
        67.53080150055257,
        75.09727268539888,
        82.42284128894218,
        90.05705554686972,
    ],
    "eval_time_loss": [
        0.002687797874386888,
        0.0012783385734920216,
        0.0017659781933616614,
        0.0008362200959388666,
        0.002159247868348757,
        0.0012853392676106523,
        0.0016840369396504684,
        0.0012107738471058838,
        0.001120737404562533,
        0.0009001140506370575,
        0.0012061004085239801,
        0.0011535447949881927,
        0.002116132850460417,
        0.0013622047913486313,
        0.0023862608427407395,
        0.001133015955360861,
        0.0032897582527766644,
    ],
    "denoising_psnr_out_db": [
        -31.09215460263618,
        -22.465375189216182,
        -15.243821587542117,
        -7.551088149287058,
        0.06361804567298635,
        7.32898778052812,
        14.757061205139578,
        22.61415710029756,
        29.88983553081288,
        37.573974853732935,
        45.16468759401264,
        52.45111528125281,
        59.99005555306938,
        67.53080150055257,
        75.09727268539888,
        82.42284128894218,
        90.05705554686972,
    ],
    "d_eff": [
        264.73170471191406,
        235.5994110107422,
        246.48392486572266,
        276.29347229003906,
        244.56478118896484,
        263.6952362060547,
        271.55690002441406,
        236.19782257080078,
        274.82310485839844,
        250.8874053955078,
        241.54344177246094,
        281.47216796875,
    ],
    "ode_nll_rk4": [1119.1084262224476, 1120.0777782119021],
    "ode_nll_heun": [1118.9530372372178, 1120.004525887716],
    "mse_nll": [1337.043549432662, 1382.5971379303064],
    "sde_nll": [1287.1321645066287, 1271.040892959666],
    "sample_ode": [9.396290984863299, 5421.335840771295, -85.66789245605469, -103.75110626220703],
    "sample_reverse_sde": [
        3.9245819015195593,
        2217.337690715629,
        -67.74893188476562,
        -111.46233367919922,
    ],
    "sample_langevin": [
        3.2113286680105375,
        1347.3087967844892,
        -60.85786819458008,
        -63.739280700683594,
    ],
    "evaluate_metrics": [
        8.542355001842866,
        1.6326512385309666,
        -1.6494482527313992,
        8.54240372667764,
        -31.13797465420925,
        -22.80260713062406,
        -14.819038423696371,
        -7.209488136975893,
        0.01569237593196537,
        7.147688350218072,
        14.978281155536548,
        22.489843386478512,
        29.87234359792523,
        37.79273121803986,
        44.96503917757562,
        52.20887912544601,
        59.778281455445416,
        67.23733056659987,
        75.22850587513442,
        82.50317165377082,
        89.94962658680438,
    ],
    "package_metrics": [
        8.542354992309024,
        0.03234704724515837,
        8.54240372667764,
        -31.13797465069339,
        -15.146311716259063,
        0.2677890835594226,
        15.302141104887074,
        30.027410212046792,
        44.65430183261429,
        59.980428254227725,
    ],
    "train_loss": [
        1.35184645652771,
        1.251028299331665,
        1.1628755331039429,
        1.0664069652557373,
        1.1371517181396484,
        1.0929970741271973,
        1.0544953346252441,
        1.0635157823562622,
        1.2287678718566895,
        1.1233277320861816,
        1.1851587295532227,
        1.0298957824707031,
        1.0674488544464111,
        1.144071340560913,
        1.1366664171218872,
        1.1190614700317383,
        1.0522583723068237,
        1.088773250579834,
        1.2381991147994995,
        1.0280659198760986,
    ],
    "train_time_loss": [
        0.24387484788894653,
        0.1981557458639145,
        0.11520013958215714,
        0.06927507370710373,
        0.10475751757621765,
        0.104410819709301,
        0.06545044481754303,
        0.0660000890493393,
        0.14752598106861115,
        0.13340350985527039,
        0.11243492364883423,
        0.05654338747262955,
        0.06890056282281876,
        0.1462036520242691,
        0.08154764026403427,
        0.09662666916847229,
        0.05410812050104141,
        0.12510007619857788,
        0.14246389269828796,
        0.06278730928897858,
    ],
    "eval": [
        1.049247033894062,
        1.009175792336464,
        0.04007124937942308,
        8.369145530592766,
        -30.542913194504578,
        -22.50590673760196,
        -15.196537836991693,
        -7.25964205219562,
        -0.1363548065366416,
        7.282390556228408,
        14.905877902272318,
        22.54817382493836,
        29.92887263940038,
        37.62514443797639,
        45.160667966414906,
        52.410187698367665,
        59.927809445721834,
        67.41358212702346,
        75.24153084735015,
        82.4827378950254,
        89.76373047731661,
    ],
    "export_log_norm_nats": [137.27950222182858],
}


def _check(name: str, values: list[float]) -> None:
    assert values == pytest.approx(GOLDEN[name], rel=REL, abs=1e-9), name


def test_analysis_goldens():
    for name, values in compute_analysis().items():
        _check(name, values)


def test_metrics_goldens(tmp_path):
    for name, values in compute_metrics(tmp_path / "model").items():
        _check(name, values)


def test_training_goldens(tmp_path):
    for name, values in compute_training(tmp_path / "run").items():
        _check(name, values)


if __name__ == "__main__":
    import tempfile

    torch.set_num_threads(1)
    with tempfile.TemporaryDirectory() as folder:
        found = {
            **compute_analysis(),
            **compute_metrics(Path(folder) / "model"),
            **compute_training(Path(folder) / "run"),
        }
    print("GOLDEN: dict[str, list[float]] = {")
    for key, values in found.items():
        print(f"    {key!r}: {values!r},")
    print("}")
