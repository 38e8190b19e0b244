"""The GAN family: the model (generator, projection discriminator, spectral norm), the losses, truncated
sampling, and the task through fit().

Tiny sizes throughout: 8x8 grey images of two classes made by the test (light and dark squares), a
generator and discriminator of a few thousand parameters. Properties: the config counts exactly what the
weights file holds; the generator's images lie in [-1, 1]; the discriminator's output depends on the class
only when conditional; spectral norm holds every discriminator matrix at singular value 1; the losses are
the papers' formulas; each phase trains only its own network; resume equals the uninterrupted run bit for
bit (with several discriminator steps too); truncation bounds z and a seed repeats its images; the
mode-collapse monitor fires on a generator that ignores z, and can stop the run; every checkpoint carries
a sample grid, and exports as the EMA generator plus the live discriminator; bad settings are one line.
"""
from __future__ import annotations

import json
from pathlib import Path

import pytest
import torch
from safetensors.torch import load_file
from test_diffusion_task import image_folder
from torch import nn

import genforge
from genforge.checkpoint import check_weights_fit_config, export_model, list_checkpoints, model_tensors, read_meta
from genforge.config import RunConfig
from genforge.errors import ConfigError, GenforgeError
from genforge.models.gan import GAN, GANConfig, Generator
from genforge.sampling.gan import generate_gan_samples, truncated_noise
from genforge.train.fit import fit
from genforge.train.runtime import Runtime
from genforge.train.tasks.gan import GANTask, d_hinge_loss, d_wasserstein_loss, g_loss, gradient_penalty

TINY = {"kind": "gan", "image_size": 8, "z_dim": 8, "g_channels": 4, "d_channels": 4}


def recipe(out: Path, data: Path, task: dict | None = None, model: dict | None = None, **train) -> RunConfig:
    return RunConfig.from_dict({
        "task": {"kind": "gan", "ema_decay": 0.9, "collapse_check_every": 0, **(task or {})},
        "model": {**TINY, **(model or {})},
        "data": {"corpus": str(data)},
        "train": {"out_dir": str(out), "max_steps": 4, "batch_size": 8, "eval_interval": 2, "eval_steps": 1,
                  "log_interval": 1, "warmup_steps": 0, "lr": 2e-3, "min_lr": 2e-4, "progress": False,
                  "precision": "fp32", "device": "cpu", "seed": 7, **train},
    })


@pytest.fixture(scope="module")
def data(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return image_folder(tmp_path_factory.mktemp("images") / "squares", per_class=12)


# --- the model -------------------------------------------------------------------------------------------
@pytest.mark.parametrize("fields", [{}, {"num_classes": 0}, {"spectral_norm": False},
                                    {"image_size": 8, "channels": 3, "g_channels": 4, "d_channels": 6, "z_dim": 5,
                                     "num_classes": 3},
                                    {"image_size": 32, "channels": 3, "g_channels": 8, "d_channels": 8,
                                     "num_classes": 0, "spectral_norm": False}])
def test_the_config_counts_what_the_weights_file_holds(fields: dict):
    cfg = GANConfig(**fields)
    model = GAN(cfg)
    assert cfg.num_parameters() == sum(t.numel() for t in model_tensors(model).values()) == model.num_parameters()
    assert cfg.num_trainable() == sum(p.numel() for p in model.parameters())
    assert cfg.num_parameters() - cfg.num_trainable() == cfg.num_buffers() > 0
    if not fields:
        assert cfg.num_parameters() < 2_000_000  # the 28x28 default trains on a CPU


@pytest.mark.parametrize("fields", [{}, {"image_size": 8, "channels": 3, "num_classes": 0}])
def test_the_generator_makes_images_in_range(fields: dict):
    torch.manual_seed(0)
    cfg = GANConfig(**fields)
    model = GAN(cfg).eval()
    z = 10 * torch.randn(6, cfg.z_dim)  # far out in the tails too
    labels = torch.arange(6) % max(cfg.num_classes, 1)
    x = model(z, labels)
    assert x.shape == (6, cfg.channels, cfg.image_size, cfg.image_size)
    assert x.abs().max() <= 1.0 and x.std() > 0
    assert model.discriminator(x, labels).shape == (6,)


@pytest.mark.parametrize("num_classes", [2, 0])
def test_the_projection_term_makes_the_discriminator_class_dependent(num_classes: int):
    torch.manual_seed(0)
    model = GAN(GANConfig(**{k: v for k, v in TINY.items() if k != "kind"}, num_classes=num_classes)).eval()
    x = torch.rand(4, 1, 8, 8) * 2 - 1
    zeros, ones = torch.zeros(4, dtype=torch.long), torch.ones(4, dtype=torch.long)
    a, b = model.discriminator(x, zeros), model.discriminator(x, ones if num_classes else zeros)
    assert (a != b).all() if num_classes else torch.equal(a, b)


def test_spectral_norm_holds_each_discriminator_matrix_at_one():
    torch.manual_seed(0)
    cfg = GANConfig(image_size=8, g_channels=4, d_channels=8, num_classes=3)
    model = GAN(cfg).train()
    for _ in range(20):  # a power iteration per training forward (15 more ran when it was built)
        model.discriminator(torch.randn(4, 1, 8, 8), torch.zeros(4, dtype=torch.long))
    layers = [m for m in model.discriminator.modules() if hasattr(m, "parametrizations")]
    assert len(layers) == 7  # five convolutions, the linear output and the class embedding
    for m in layers:
        sigma = torch.linalg.matrix_norm(m.weight.detach().flatten(1), ord=2)
        assert abs(float(sigma) - 1.0) < 0.05, (m, float(sigma))  # random matrices converge slowest
    plain = GAN(GANConfig(image_size=8, g_channels=4, d_channels=8, spectral_norm=False))
    assert not any(hasattr(m, "parametrizations") for m in plain.discriminator.modules())
    assert float(torch.linalg.matrix_norm(plain.discriminator.convs[1].weight.detach().flatten(1), ord=2)) < 0.5


@pytest.mark.parametrize("fields,needle", [({"image_size": 10}, "model.image_size=10 is invalid"),
                                           ({"channels": 2}, "model.channels=2 is invalid"),
                                           ({"num_classes": -1}, "model.num_classes=-1 is invalid"),
                                           ({"z_dim": 0}, "model.z_dim=0 is invalid")])
def test_bad_model_fields_are_one_line(fields: dict, needle: str):
    with pytest.raises(ConfigError, match=needle) as e:
        GANConfig(**fields)
    assert "\n" not in str(e.value)


# --- the losses ---------------------------------------------------------------------------------------------
def test_the_losses_are_the_papers_formulas():
    real, fake = torch.tensor([2.0, 0.5, -1.0, 0.0]), torch.tensor([-3.0, -0.5, 0.25, 1.0])
    hinge = (0 + 0.5 + 2.0 + 1.0) / 4 + (0 + 0.5 + 1.25 + 2.0) / 4
    assert d_hinge_loss(real, fake).item() == pytest.approx(hinge)
    assert d_wasserstein_loss(real, fake).item() == pytest.approx((-2.25 / 4) - (1.5 / 4))
    assert g_loss(fake).item() == pytest.approx(2.25 / 4)


def test_the_gradient_penalty_matches_autograd_per_sample():
    torch.manual_seed(0)
    critic = GAN(GANConfig(image_size=8, g_channels=4, d_channels=4, num_classes=2, spectral_norm=False)).discriminator
    real, fake = torch.randn(5, 1, 8, 8), torch.randn(5, 1, 8, 8)
    labels, eps = torch.tensor([0, 1, 1, 0, 1]), torch.rand(5)
    want = 0.0
    for i in range(5):  # one sample at a time: the critic has no batch coupling, so this is the definition
        x = (eps[i] * real[i:i + 1] + (1 - eps[i]) * fake[i:i + 1]).requires_grad_(True)
        (g,) = torch.autograd.grad(critic(x, labels[i:i + 1]).sum(), x)
        want += (g.norm() - 1).item() ** 2 / 5
    gp = gradient_penalty(critic, real, fake, labels, eps)
    assert gp.item() == pytest.approx(want, rel=1e-5)
    gp.backward()  # differentiable: the critic's update follows the penalty
    assert critic.convs[0].weight.grad is not None and critic.convs[0].weight.grad.abs().sum() > 0

    class Linear(nn.Module):  # D(x) = <w, x>: the gradient is w everywhere, so the penalty is (|w| - 1)^2
        def __init__(self) -> None:
            super().__init__()
            self.w = nn.Parameter(torch.full((1, 1, 8, 8), 0.5))

        def forward(self, x, labels):
            return (self.w * x).flatten(1).sum(1)

    assert gradient_penalty(Linear(), real, fake, None, eps).item() == pytest.approx((4.0 - 1.0) ** 2)


# --- sampling ---------------------------------------------------------------------------------------------
def test_truncation_bounds_z_and_a_seed_repeats_its_images():
    g = torch.Generator().manual_seed(0)
    z = truncated_noise(256, 16, 0.5, g)
    assert z.abs().max() <= 0.5 and z.std() > 0.2  # redrawn, not clamped: no pile-up at the bound
    assert (z.abs() == 0.5).sum() == 0
    assert truncated_noise(256, 16, None, torch.Generator().manual_seed(0)).abs().max() > 2.5
    torch.manual_seed(0)
    gen = GAN(GANConfig(image_size=8, g_channels=4, d_channels=4, num_classes=2)).generator.train()
    labels = torch.tensor([0, 1, 1, 0])
    a = generate_gan_samples(gen, 4, 64, labels, truncation=1.0, seed=3)
    assert gen.training  # put back as it was
    assert torch.equal(a, generate_gan_samples(gen, 4, 64, labels, truncation=1.0, seed=3))
    assert not torch.equal(a, generate_gan_samples(gen, 4, 64, labels, truncation=1.0, seed=4))
    assert not torch.equal(a, generate_gan_samples(gen, 4, 64, labels, truncation=None, seed=3))
    for bad in (0.0, -1.0, float("nan")):
        with pytest.raises(GenforgeError, match="truncation=.* is invalid"):
            generate_gan_samples(gen, 2, 64, None, truncation=bad)


# --- the task ---------------------------------------------------------------------------------------------
def test_each_phase_trains_only_its_own_network_at_its_own_rate(tmp_path: Path, data: Path):
    task = GANTask(recipe(tmp_path / "run", data, {"d_lr_mult": 4.0}, lr=1e-3), Runtime(torch.device("cpu"), None))
    task.setup(tmp_path / "run", None)
    torch.manual_seed(0)
    model = task.build_model()
    opts = task.optimizers(model, torch.device("cpu"))
    (d_phase, g_phase), batch = task.phases(), task.next_batch(0, 1)

    def snapshot(net: nn.Module) -> dict[str, torch.Tensor]:
        return {n: p.detach().clone() for n, p in net.named_parameters()}

    for phase, own, other in ((d_phase, model.discriminator, model.generator),
                              (g_phase, model.generator, model.discriminator)):
        mine, theirs = snapshot(own), snapshot(other)
        phase.loss(model, batch).backward()
        assert all(p.grad is None for p in other.parameters())  # no gradient reaches the other network
        for j in phase.optimizers:
            opts[j].step()
        for opt in opts:
            opt.zero_grad(set_to_none=True)
        assert all(torch.equal(p, theirs[n]) for n, p in other.named_parameters())
        # Adam's first step moves each weight by its lr: train.lr x task.d_lr_mult for the discriminator
        step = max(float((p.detach() - mine[n]).abs().max()) for n, p in own.named_parameters())
        assert step == pytest.approx(4e-3 if own is model.discriminator else 1e-3, rel=1e-3)
    assert [g["lr"] for opt in opts for g in opt.param_groups] == [1e-3, 1e-3]  # the schedule's, kept
    assert [ph.optimizers for ph in task.phases()] == [(0,), (1,)]
    assert {id(p) for p in opts[0].param_groups[0]["params"]} == {id(p) for p in model.discriminator.parameters()}


@pytest.mark.parametrize("task", [{"loss": "hinge"}, {"loss": "wgan-gp", "d_steps": 2, "adam_betas": [0.0, 0.9]}])
def test_resume_equals_the_uninterrupted_run(tmp_path: Path, data: Path, task: dict):
    whole = fit(recipe(tmp_path / "a", data, task))
    fit(recipe(tmp_path / "b", data, task), stop_after=3)
    resumed = fit(recipe(tmp_path / "b", data, task), resume=True)
    assert whole.step == resumed.step == 4
    for name in ("model.safetensors", "trainer.safetensors"):  # weights; both optimizers, EMA, data generator
        a, b = load_file(str(whole.checkpoint / name)), load_file(str(resumed.checkpoint / name))
        assert a.keys() == b.keys()
        for k in a:
            assert torch.equal(a[k], b[k]), (name, k)
    logged = [json.loads(line) for line in (tmp_path / "a" / "metrics.jsonl").read_text().splitlines()]
    train, evals = [r for r in logged if "loss" in r], [r for r in logged if "val_loss" in r]
    phases = task.get("d_steps", 1) + 1
    assert all(f"loss_{phases - 1}" in r and f"loss_{phases}" not in r for r in train)  # one loss per phase
    assert {"val_loss", "diversity", "d_accuracy", "d_real", "d_fake"} <= set(evals[-1])
    assert all(v == v for r in logged for v in r.values())  # no NaN anywhere


def test_checkpoints_carry_a_grid_and_export_the_ema_generator(tmp_path: Path, data: Path):
    from PIL import Image

    run = fit(recipe(tmp_path / "run", data, {"truncation": 1.5})).out_dir
    for ckpt in list_checkpoints(run):
        # 8 samples of each of the 2 classes, 8 to a row, 8x8 tiles 2 pixels apart, shown at 2x
        assert Image.open(ckpt / "samples.png").size == (2 * (8 * 8 + 7 * 2), 2 * (2 * 8 + 1 * 2))
    last = list_checkpoints(run)[-1]
    meta = read_meta(last)
    assert meta["pipeline"] == "image" and meta["task"] == "gan" and meta["classes"] == ["dark", "light"]
    assert meta["model"]["kind"] == "gan" and meta["sampling_weights"] == "ema" and meta["data"] == str(data)
    assert meta["gan"] == {"loss": "hinge", "truncation": 1.5}
    trainer, weights = load_file(str(last / "trainer.safetensors")), load_file(str(last / "model.safetensors"))
    out = export_model(last, tmp_path / "exported", "fp32")
    exported = load_file(str(out / "model.safetensors"))
    assert exported.keys() == weights.keys()
    for k, v in exported.items():  # the EMA generator (and its live statistics) and the live discriminator
        assert torch.equal(v, trainer[f"ema.{k}"])
        if k.startswith("discriminator.") or k.endswith(("running_mean", "running_var", "num_batches_tracked")):
            assert torch.equal(v, weights[k]), k
    assert not torch.equal(exported["generator.fc.weight"], weights["generator.fc.weight"])  # it lags
    check_weights_fit_config(out, read_meta(out))  # the config implies the exported file's size

    # the image pipeline samples the EMA generator: from the run's checkpoint and from the export alike
    im, im_exported = genforge.load(last), genforge.load(out)
    assert im.family == "gan" and im.truncation == 1.5 and im.classes == ["dark", "light"]
    a = im.generate(n=6, cls="light", seed=4)
    assert a.dtype == torch.uint8 and a.shape == (6, 1, 8, 8)
    assert torch.equal(a, im_exported.generate(n=6, cls=1, seed=4))
    assert not torch.equal(a, im.generate(n=6, cls=1, seed=5))
    assert not torch.equal(a, im.generate(n=6, cls=1, seed=4, truncation=0.2))  # a tighter truncation

    unconditional = fit(recipe(tmp_path / "uncond", data, model={"num_classes": 0}, max_steps=2)).out_dir
    grid = Image.open(list_checkpoints(unconditional)[-1] / "samples.png")
    assert grid.size == (2 * (8 * 8 + 7 * 2),) * 2  # 64 samples, 8 rows of 8


def _ignore_z(monkeypatch: pytest.MonkeyPatch) -> None:
    """A collapsed generator: its images depend on the class alone."""
    forward = Generator.forward
    monkeypatch.setattr(Generator, "forward", lambda self, z, labels=None: forward(self, torch.zeros_like(z), labels))


def test_the_collapse_monitor_warns_about_a_generator_that_ignores_z(tmp_path: Path, data: Path, capsys,
                                                                      monkeypatch: pytest.MonkeyPatch):
    fit(recipe(tmp_path / "healthy", data, {"collapse_check_every": 2, "collapse_min_diversity": 0.0}))
    assert "mode collapse" not in capsys.readouterr().err
    _ignore_z(monkeypatch)
    fit(recipe(tmp_path / "run", data, {"collapse_check_every": 2}))
    err = capsys.readouterr().err
    assert "genforge: warning: possible mode collapse at step 2: sample diversity 0.000 < " \
           "task.collapse_min_diversity=0.2" in err and "at step 4" in err
    evals = [json.loads(ln) for ln in (tmp_path / "run" / "metrics.jsonl").read_text().splitlines() if "val_loss" in ln]
    assert evals and all(r["diversity"] == 0.0 for r in evals)


def test_stop_on_collapse_stops_the_run_in_one_line_and_keeps_the_last_checkpoint(
        tmp_path: Path, data: Path, monkeypatch: pytest.MonkeyPatch):
    _ignore_z(monkeypatch)
    cfg = recipe(tmp_path / "run", data, {"collapse_check_every": 3, "stop_on_collapse": True})
    with pytest.raises(GenforgeError, match="stopped: possible mode collapse at step 3") as e:
        fit(cfg)
    assert "\n" not in str(e.value) and "the last checkpoint is kept" in str(e.value)
    assert [p.name for p in list_checkpoints(tmp_path / "run")] == ["step-00000002"]


@pytest.mark.parametrize("section,change,needle", [
    ("task", {"loss": "lsgan"}, "task.loss='lsgan' is invalid: allowed hinge, wgan-gp"),
    ("task", {"gp_weight": -1.0}, "task.gp_weight=-1.0 is invalid"),
    ("task", {"d_steps": 0}, "task.d_steps=0 is invalid"),
    ("task", {"d_lr_mult": 0.0}, "task.d_lr_mult=0.0 is invalid"),
    ("task", {"ema_decay": 1.0}, "task.ema_decay=1.0 is invalid"),
    ("task", {"truncation": 0.05}, "task.truncation=0.05 is invalid"),
    ("task", {"truncation": float("inf")}, "task.truncation=inf is invalid"),
    ("task", {"collapse_check_every": -1}, "task.collapse_check_every=-1 is invalid"),
    ("task", {"collapse_min_diversity": float("nan")}, "task.collapse_min_diversity=nan is invalid"),
    ("task", {"adam_betas": [0.5]}, "task.adam_betas=[0.5] is invalid"),
    ("task", {"stop_on_collapse": "yes"}, "task.stop_on_collapse='yes' has the wrong type"),
    ("task", {"sample_steps": 4}, "unknown key task.sample_steps"),
    ("model", {"kind": "unet"}, "model.kind='unet' cannot be trained by the GAN task"),
    ("model", {"num_classes": 5}, "model.num_classes=5 but"),
    ("model", {"image_size": 10}, "model.image_size=10 is invalid"),
    ("train", {"optimizer": "muon"}, "train.optimizer='muon' does not apply to the GAN task"),
])
def test_bad_settings_are_one_line(tmp_path: Path, data: Path, section: str, change: dict, needle: str):
    base = recipe(tmp_path / "run", data).to_dict()
    with pytest.raises(ConfigError) as e:
        fit(RunConfig.from_dict({**base, section: {**base[section], **change}}))
    assert needle in str(e.value) and "\n" not in str(e.value), str(e.value)
    assert not (tmp_path / "run" / "checkpoints").exists()
