"""Each adaptation loss on tiny tensors, with properties that could fail."""
from __future__ import annotations

import numpy as np
import pytest
import torch
from torch import nn

from transferkit.adapt import (ConditionalDomainAdversarialLoss, CorrelationAlignmentLoss, DomainAdversarialLoss,
                               DomainDiscriminator, MinimumClassConfusionLoss, MultipleKernelMMD, PseudoLabelLoss,
                               adapt_batchnorm, coral_loss, mcc_loss, mk_mmd, reversal_coefficient,
                               reverse_gradient, select_pseudo_labels)
from transferkit.adapt.adabn import require_batchnorm
from transferkit.errors import ConfigError


@pytest.fixture()
def gen():
    return torch.Generator().manual_seed(0)


def test_coral_zero_for_identical_and_positive_for_shifted_or_rescaled(gen):
    a = torch.randn(64, 8, generator=gen)
    assert coral_loss(a, a.clone()).item() == pytest.approx(0.0, abs=1e-10)
    assert coral_loss(a, a + 1.0).item() > 0.5  # mean shift only
    scaled = coral_loss(a, a * 3.0).item()  # covariance change only (same mean ~0)
    assert scaled > coral_loss(a, a * 1.1).item() > 0


def test_coral_is_differentiable_and_module_matches_function(gen):
    a = torch.randn(32, 4, generator=gen, requires_grad=True)
    b = torch.randn(32, 4, generator=gen) * 2
    loss = CorrelationAlignmentLoss()(a, b)
    assert loss.item() == pytest.approx(coral_loss(a, b).item())
    loss.backward()
    assert torch.isfinite(a.grad).all() and a.grad.abs().sum() > 0


def test_mmd_zero_identical_symmetric_and_detects_shift(gen):
    a, b = torch.randn(64, 6, generator=gen), torch.randn(64, 6, generator=gen)
    assert mk_mmd(a, a.clone()).item() == pytest.approx(0.0, abs=1e-6)
    same = mk_mmd(a, b).item()
    shifted = mk_mmd(a, b + 2.0).item()
    assert shifted > 5 * same
    assert mk_mmd(a, b + 2.0).item() == pytest.approx(mk_mmd(b + 2.0, a).item(), rel=1e-5)
    assert MultipleKernelMMD()(a, b).item() == pytest.approx(same)


def test_gradient_reversal_flips_and_scales_gradients():
    x = torch.randn(5, 3, requires_grad=True)
    y = reverse_gradient(x, 0.3)
    assert torch.equal(y, x)
    (y * 2).sum().backward()
    assert torch.allclose(x.grad, torch.full_like(x, -0.6))


def test_dann_schedule_rises_from_zero_to_one():
    vals = [reversal_coefficient(p) for p in np.linspace(0, 1, 11)]
    assert vals[0] == 0.0
    assert all(b > a for a, b in zip(vals, vals[1:]))
    assert 0.99 < vals[-1] <= 1.0
    assert reversal_coefficient(2.0) == vals[-1]  # clipped to [0, 1]


def test_dann_loss_trains_discriminator_and_reverses_feature_gradient(gen):
    torch.manual_seed(0)
    disc = DomainDiscriminator(4, hidden=8, dropout=0.0)
    f_s = torch.randn(16, 4, generator=gen, requires_grad=True)
    f_t = (torch.randn(16, 4, generator=gen) + 1).requires_grad_(True)
    adv = DomainAdversarialLoss(disc)
    out = adv(f_s, f_t, progress=0.0)  # coefficient 0: features get no gradient yet
    out.loss.backward()
    assert 0.0 <= out.domain_accuracy <= 1.0 and torch.isfinite(out.loss)
    assert f_s.grad.abs().sum() == 0 and all(p.grad is not None for p in disc.parameters())
    # at progress 1 the feature gradient is minus (about) the plain BCE gradient
    f_s.grad = None
    adv(f_s, f_t, progress=1.0).loss.backward()
    reversed_grad = f_s.grad.clone()
    f_s.grad = None
    logits = disc(torch.cat([f_s, f_t]))
    plain = 0.5 * (nn.functional.binary_cross_entropy_with_logits(logits[:16], torch.ones(16))
                   + nn.functional.binary_cross_entropy_with_logits(logits[16:], torch.zeros(16)))
    plain.backward()
    assert torch.allclose(reversed_grad, -reversal_coefficient(1.0) * f_s.grad, atol=1e-6)


@pytest.mark.parametrize("max_dim", [4096, 16])
def test_cdan_loss_finite_and_differentiable(gen, max_dim):
    cdan = ConditionalDomainAdversarialLoss(8, 3, hidden=16, max_dim=max_dim)
    assert cdan.randomized == (8 * 3 > max_dim)
    f_s = torch.randn(10, 8, generator=gen, requires_grad=True)
    f_t = torch.randn(12, 8, generator=gen, requires_grad=True)
    out = cdan(f_s, torch.randn(10, 3, generator=gen), f_t, torch.randn(12, 3, generator=gen), progress=0.5)
    out.loss.backward()
    assert torch.isfinite(out.loss) and f_t.grad.abs().sum() > 0


def test_cdan_entropy_conditioning_weighs_confident_examples_more():
    from transferkit.adapt.adversarial import _per_domain_weights

    p = torch.tensor([[0.98, 0.01, 0.01], [1 / 3, 1 / 3, 1 / 3]])
    w = _per_domain_weights(p)
    assert w[0] > w[1] and w.mean().item() == pytest.approx(1.0)


def test_mcc_lower_for_confident_diagonal_predictions():
    eye = torch.eye(4).repeat(4, 1) * 20.0  # 16 confident predictions, each class 4 times
    confused = torch.zeros(16, 4)
    confused[:, 0] = confused[:, 1] = 3.0  # everything split between classes 0 and 1
    assert mcc_loss(eye).item() < 0.01
    assert mcc_loss(confused).item() > 0.1
    assert MinimumClassConfusionLoss(2.5)(eye).item() == pytest.approx(mcc_loss(eye).item())


def test_pseudo_labels_respect_threshold_and_class_balance():
    rng = np.random.default_rng(0)
    n0, n1, n2 = 80, 10, 10
    probs = np.zeros((n0 + n1 + n2, 3))
    conf = rng.uniform(0.5, 1.0, len(probs))
    cls = np.r_[np.zeros(n0, int), np.ones(n1, int), np.full(n2, 2)]
    probs[np.arange(len(probs)), cls] = conf
    probs[np.arange(len(probs)), (cls + 1) % 3] = 1 - conf
    pl = select_pseudo_labels(probs, threshold=0.6, class_balanced=True)
    assert (pl.confidence >= 0.6).all()
    assert (probs[pl.index].argmax(1) == pl.labels).all()
    counts = pl.counts(3)
    assert counts[0] <= int(np.ceil(len(probs) / 3)) < ((cls == 0) & (conf >= 0.6)).sum()
    kept0 = pl.confidence[pl.labels == 0]
    dropped0 = conf[(cls == 0) & (conf >= 0.6) & ~np.isin(np.arange(len(probs)), pl.index)]
    assert kept0.min() >= dropped0.max()  # the most confident ones are kept
    assert pl.class_weights[0] < pl.class_weights[1]  # rarer pseudo-classes weigh more
    unbalanced = select_pseudo_labels(probs, threshold=0.6, class_balanced=False)
    assert unbalanced.counts(3)[0] == ((cls == 0) & (conf >= 0.6)).sum()


def test_pseudo_label_loss_ignores_unlabelled_rows():
    logits = torch.randn(4, 3, requires_grad=True)
    pseudo = torch.tensor([-1, 2, -1, 0])
    loss = PseudoLabelLoss()(logits, pseudo, torch.ones(3))
    expected = nn.functional.cross_entropy(logits[[1, 3]], pseudo[[1, 3]])
    assert loss.item() == pytest.approx(expected.item(), rel=1e-6)
    loss.backward()
    assert logits.grad[0].abs().sum() == 0 and logits.grad[1].abs().sum() > 0
    none = PseudoLabelLoss()(logits, torch.full((4,), -1), torch.ones(3))
    assert none.item() == 0.0


def test_adabn_moves_running_stats_toward_target_and_keeps_weights():
    torch.manual_seed(0)
    model = nn.Sequential(nn.Linear(3, 4), nn.BatchNorm1d(4))
    model.train()
    for _ in range(20):
        model(torch.randn(32, 3))
    source_mean = model[1].running_mean.clone()
    weights = model[0].weight.clone()
    target = [torch.randn(32, 3) + 5.0 for _ in range(4)]
    assert adapt_batchnorm(model, target) == 1
    with torch.no_grad():
        target_feat_mean = model[0](torch.cat(target)).mean(0)
    assert torch.allclose(model[1].running_mean, target_feat_mean, atol=1e-4)
    assert not torch.allclose(model[1].running_mean, source_mean, atol=0.5)
    assert torch.equal(model[0].weight, weights) and not model.training
    assert model[1].momentum == 0.1  # restored


def test_adabn_refuses_clearly_without_batchnorm():
    model = nn.Sequential(nn.Linear(3, 4), nn.LayerNorm(4))
    with pytest.raises(ConfigError, match="no BatchNorm layer .*LayerNorm"):
        require_batchnorm(model, "backbone 'x'")
    with pytest.raises(ConfigError):
        adapt_batchnorm(model, [torch.randn(2, 3)])
