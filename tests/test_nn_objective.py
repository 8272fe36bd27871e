"""elbo_loss: the per-datum negative ELBO, its minibatch unbiasedness, likelihoods, errors."""

from __future__ import annotations

import math
import warnings

import pytest
import torch
import torch.nn.functional as F
from torch import nn
from torch.distributions import Normal, StudentT
from torch.utils.data import DataLoader, TensorDataset

import noisybayes.nn as bnn
from noisybayes._rng import seeded_from


def _net(seed: int = 0) -> nn.Module:
    torch.manual_seed(seed)
    return bnn.bayesian(nn.Sequential(nn.Linear(3, 16), nn.Tanh(), nn.Linear(16, 1)))


def _data(n: int = 48, seed: int = 1) -> tuple[torch.Tensor, torch.Tensor]:
    gen = torch.Generator().manual_seed(seed)
    x = torch.randn(n, 3, generator=gen)
    return x, x.sum(1) + 0.3 * torch.randn(n, generator=gen)


def _fix_noise(net: nn.Module) -> None:
    """Move every mean to one posterior draw, then use the means: a fixed weight sample."""
    with torch.no_grad():
        for m in net.modules():
            if isinstance(m, bnn.BayesLinear):
                m.weight_loc.add_(m.weight_scale * torch.randn_like(m.weight_loc))
                m.bias_loc.add_(m.bias_scale * torch.randn_like(m.bias_loc))


def test_full_batch_loss_is_mean_nll_plus_kl_over_n():
    net, lik = _net(), bnn.Gaussian(0.5)
    x, y = _data()
    with bnn.posterior_mean(net):
        loss = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=len(x), temperature=1.0)
        nll = -Normal(net(x).squeeze(-1), 0.5).log_prob(y).mean()
    torch.testing.assert_close(loss, nll + bnn.kl_divergence(net) / len(x))


def test_minibatch_losses_average_to_the_full_data_objective():
    """Fixed weight noise: over the batches of one permutation the mean is exact."""
    net, lik = _net(), bnn.Gaussian(0.7)
    _fix_noise(net)
    x, y = _data()
    n = len(x)
    perm = torch.randperm(n, generator=torch.Generator().manual_seed(2))
    with bnn.posterior_mean(net):
        full = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=n)
        batches = [bnn.elbo_loss(net, x[i], y[i], likelihood=lik, n_data=n)
                   for i in perm.split(8)]
    torch.testing.assert_close(torch.stack(batches).mean(), full)


def test_minibatch_estimate_is_unbiased_under_weight_noise():
    """Random batches and noise: mean of estimates within 5 MC standard errors of the full loss."""
    torch.manual_seed(3)
    net, lik = _net(), bnn.Gaussian(0.7)
    x, y = _data()
    n, reps = len(x), 400
    with torch.no_grad():
        full = torch.stack([bnn.elbo_loss(net, x, y, likelihood=lik, n_data=n)
                            for _ in range(reps)])
        part = torch.stack([bnn.elbo_loss(net, x[i], y[i], likelihood=lik, n_data=n)
                            for _ in range(reps // 6) for i in torch.randperm(n).split(8)])
    se = math.sqrt(full.var() / len(full) + part.var() / len(part))
    assert abs(full.mean() - part.mean()) < 5 * se


def test_temperature_scales_only_the_kl_and_n_data_comes_from_a_loader():
    net, lik = _net(), bnn.Gaussian()
    x, y = _data()
    loader = DataLoader(TensorDataset(x, y), batch_size=8)
    with bnn.posterior_mean(net):
        one = bnn.elbo_loss(net, x[:8], y[:8], likelihood=lik, n_data=loader)
        two = bnn.elbo_loss(net, x[:8], y[:8], likelihood=lik, n_data=len(x), temperature=2.0)
    torch.testing.assert_close(two - one, bnn.kl_divergence(net) / len(x))


def test_several_samples_run_in_one_batched_pass_and_average_the_likelihood():
    net, lik = _net(), bnn.Gaussian()
    x, y = _data()
    calls = []
    net.register_forward_hook(lambda m, i, o: calls.append(i[0].shape[0]))
    loss = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=100, n_samples=4)
    assert calls == [4 * len(x)] and torch.isfinite(loss)


def test_likelihood_log_densities():
    f, y = torch.randn(5), torch.randn(5)
    torch.testing.assert_close(bnn.StudentT(3.0, 0.4).log_prob(f, y),
                               StudentT(3.0, f, 0.4).log_prob(y))
    two = torch.randn(5, 2)
    torch.testing.assert_close(
        bnn.HeteroscedasticGaussian(0.0).log_prob(two, y[:, None]),
        Normal(two[:, 0], F.softplus(two[:, 1])).log_prob(y))
    torch.testing.assert_close(
        bnn.HeteroscedasticStudentT(3.0, 0.0).log_prob(two, y[:, None]),
        StudentT(3.0, two[:, 0], F.softplus(two[:, 1])).log_prob(y))
    logits, labels = torch.randn(5, 3), torch.tensor([0, 2, 1, 1, 0])
    torch.testing.assert_close(bnn.Categorical().log_prob(logits, labels),
                               -F.cross_entropy(logits, labels, reduction="none"))
    torch.testing.assert_close(
        bnn.Bernoulli().log_prob(f[:, None], (y > 0).float()),
        -F.binary_cross_entropy_with_logits(f, (y > 0).float(), reduction="none"))


def test_gaussian_scale_inverts_softplus_exactly():
    torch.testing.assert_close(bnn.Gaussian(0.25).scale, torch.tensor(0.25))


@pytest.mark.parametrize("mse", ["mse", nn.MSELoss(), F.mse_loss])
def test_training_on_squared_error_warns_about_noise_collapse(mse):
    net = _net()
    x, y = _data()
    with pytest.warns(bnn.NoiseCollapseWarning, match="drives every injected scale to zero"):
        loss = bnn.elbo_loss(net, x, y, likelihood=mse, n_data=len(x))
    assert torch.isfinite(loss)


def test_a_proper_likelihood_does_not_warn():
    net = _net()
    x, y = _data()
    with warnings.catch_warnings():
        warnings.simplefilter("error")
        bnn.elbo_loss(net, x, y, likelihood=bnn.Gaussian(), n_data=len(x))


def _call(**changes):
    net = _net()
    x, y = _data(8)
    args = {"x": x, "y": y, "likelihood": bnn.Gaussian(), "n_data": 100}
    args.update(changes)
    return bnn.elbo_loss(net, args.pop("x"), args.pop("y"), **args)


_nan_x = _data(8)[0].clone()
_nan_x[2, 1] = float("nan")


@pytest.mark.parametrize(
    ("changes", "error", "message"),
    [
        ({"y": torch.zeros(8, 2)}, ValueError,
         r"y must match the model output .* got y of shape \(8, 2\) and output of shape \(8, 1\)"),
        ({"y": torch.zeros(7)}, ValueError, r"y must have as many rows as x \(8\), got 7"),
        ({"x": _nan_x}, ValueError, r"x must be finite, got 1 NaN/inf .* nan at index \(2, 1\)"),
        ({"y": torch.tensor([0.0] * 7 + [float("inf")])}, ValueError,
         r"y must be finite, got 1 NaN/inf value\(s\), the first inf at index \(7,\)"),
        ({"n_data": 4}, ValueError, r"n_data must be >= the batch size 8 .*, got 4"),
        ({"n_data": 0}, ValueError, r"n_data must be an integer >= 1 or a DataLoader, got 0"),
        ({"n_samples": 0}, ValueError, r"n_samples must be an integer >= 1, got 0"),
        ({"temperature": -1.0}, ValueError, r"temperature must be .* >= 0, got -1.0"),
        ({"likelihood": "gaussian"}, ValueError, r"likelihood must be .* got 'gaussian' .*"),
        ({"likelihood": 3}, TypeError, r"likelihood must be a nb.nn.Likelihood .* got 3"),
        ({"x": [[1.0]]}, TypeError, r"x must be a torch.Tensor, got list"),
        ({"y": torch.tensor([0, 1, 2, 1, 0, 1, 5, 0]), "likelihood": "bernoulli"}, ValueError,
         r"y must hold class labels in \[0, 2\), got 2 at index \(2,\)"),
        ({"y": torch.full((8,), 0.5), "likelihood": "bernoulli"}, ValueError,
         r"y must hold integer class labels, got 0.5"),
        ({"likelihood": bnn.HeteroscedasticGaussian()}, ValueError,
         r"y must match the model output \(output shaped \(\*y.shape, 2\)"),
    ],
)
def test_bad_input_errors_name_the_argument_and_value(changes, error, message):
    with pytest.raises(error, match=message):
        _call(**changes)


def test_categorical_labels_outside_the_range_and_shape_mismatch():
    net = bnn.bayesian(nn.Linear(3, 4))
    x = torch.randn(3, 3)
    with pytest.raises(ValueError, match=r"y must hold class labels in \[0, 4\), got -1"):
        bnn.elbo_loss(net, x, torch.tensor([0, -1, 3]), likelihood="categorical", n_data=10)
    with pytest.raises(ValueError, match=r"logits shaped \(\*y.shape, n_classes\)"):
        bnn.elbo_loss(net, x, torch.zeros(3, 4), likelihood="categorical", n_data=10)


@pytest.mark.parametrize(
    ("call", "message"),
    [
        (lambda: bnn.Gaussian(0.0), r"scale must be a finite number > 0, got 0.0"),
        (lambda: bnn.StudentT(df=-2.0), r"df must be a finite number > 0, got -2.0"),
        (lambda: bnn.HeteroscedasticGaussian(-1.0), r"min_scale must be .* >= 0, got -1.0"),
        (lambda: bnn.HeteroscedasticStudentT(df=math.inf), r"df must be a finite number > 0"),
        (lambda: bnn.StudentT(df=2.0, learn_df=True),
         r"df must be > 2 to be learned \(a finite noise variance\), got 2.0"),
    ],
)
def test_likelihood_argument_errors(call, message):
    with pytest.raises(ValueError, match=message):
        call()


@pytest.mark.parametrize("heteroscedastic", [False, True])
def test_learned_degrees_of_freedom_reach_the_maximum_likelihood_df(heteroscedastic):
    """Training only the noise model on Student-t(4) draws recovers df = 4 within 4 standard
    errors (inverse Hessian of torch's Student-t log-likelihood at the optimum)."""
    gen = torch.Generator().manual_seed(0)
    n, true_df = 20000, 4.0
    normal = torch.randn(n, generator=gen, dtype=torch.float64)
    with seeded_from(gen):
        chi2 = torch.distributions.Chi2(torch.tensor(true_df, dtype=torch.float64)).sample((n,))
    y = 0.5 * normal / (chi2 / true_df).sqrt()
    if heteroscedastic:  # one free scale column shared by every row
        lik = bnn.HeteroscedasticStudentT(6.0, 0.0, learn_df=True).double()
        raw = nn.Parameter(torch.zeros((), dtype=torch.float64))
        params = [*lik.parameters(), raw]
        outputs = lambda: torch.stack([torch.zeros_like(y), raw.expand(n)], -1)  # noqa: E731
        scale = lambda: F.softplus(raw)  # noqa: E731
    else:
        lik = bnn.StudentT(6.0, 1.0, learn_df=True).double()
        params = list(lik.parameters())
        outputs = lambda: torch.zeros_like(y)  # noqa: E731
        scale = lambda: lik.scale  # noqa: E731
    assert lik.df.item() == pytest.approx(6.0) and len(params) == 2
    assert lik.df.item() == pytest.approx(2 + lik.df_free.exp().item())  # df = 2 + exp(free)
    opt = torch.optim.LBFGS(params, max_iter=500, line_search_fn="strong_wolfe")

    def closure() -> torch.Tensor:
        opt.zero_grad()
        loss = -lik.log_prob(outputs(), y).sum()
        loss.backward()
        return loss

    opt.step(closure)

    def reference_nll(phi: torch.Tensor) -> torch.Tensor:  # phi = (df, scale)
        return -StudentT(phi[0], 0.0, phi[1]).log_prob(y).sum()

    with torch.no_grad():
        phi = torch.stack([lik.df, scale()])
    grad = torch.func.grad(reference_nll)(phi)
    cov = torch.linalg.inv(torch.func.hessian(reference_nll)(phi))
    se = cov.diagonal().sqrt()
    assert (grad.abs() * se < 1e-3).all()  # a maximum of the reference likelihood
    assert abs(float(phi[0]) - true_df) < 4 * se[0] and se[0] < 0.5, (phi, se)


def test_a_scalar_input_is_rejected():
    with pytest.raises(ValueError, match=r"x must have a leading batch dimension, got a scalar"):
        bnn.elbo_loss(_net(), torch.tensor(1.0), torch.ones(1), likelihood=bnn.Gaussian(),
                      n_data=1)


def test_squared_error_alone_collapses_the_injected_noise_and_the_elbo_does_not():
    """The seed's trap: E[(y - f)^2] = (y - E f)^2 + Var f is minimised by zero noise."""
    torch.manual_seed(0)
    x, y = _data(64)
    scales = {}
    for name, kl_weight in (("mse", 0.0), ("elbo", 1.0)):
        net = bnn.bayesian(nn.Linear(3, 1), init_scale=0.5)
        lik = bnn.Gaussian()
        opt = torch.optim.Adam([*net.parameters(), *lik.parameters()], lr=0.05)
        for _ in range(1500):
            if kl_weight:
                loss = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=64)
            else:
                loss = F.mse_loss(net(x).squeeze(-1), y)
            opt.zero_grad()
            loss.backward()
            opt.step()
        scales[name] = net.weight_scale.mean().item()
    # the exact posterior sd of each slope is about noise / sqrt(N) = 0.3 / 8 ~ 0.04
    assert scales["mse"] < 0.01 and 0.02 < scales["elbo"] < 0.08, scales


def test_a_generator_makes_the_loss_reproducible():
    net, lik = _net(), bnn.Gaussian()
    x, y = _data()
    a = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=100,
                      generator=torch.Generator().manual_seed(7))
    b = bnn.elbo_loss(net, x, y, likelihood=lik, n_data=100,
                      generator=torch.Generator().manual_seed(7))
    torch.testing.assert_close(a, b)


def test_train_checks_the_rows_once_in_the_networks_dtype_and_a_sources_batches():
    """``nb.nn.train`` refuses NaN rows before training, also a float64 value that is finite
    only in float64 (the float32 network sees inf), and checks each batch of a data source
    (here an in-memory ``TensorSource`` holding a NaN), naming the argument."""
    from noisybayes.engine import TensorSource

    x, y = _data(8)
    wide = x.double()
    wide[3, 0] = 1e300
    with pytest.raises(ValueError, match=r"x must be finite, got 1 NaN/inf .* at index \(3, 0\)"):
        bnn.train(_net(), wide, y, likelihood=bnn.Gaussian(), n_epochs=1, progress=False)
    with pytest.raises(ValueError, match=r"x must be finite, got 1 NaN/inf .* nan"):
        bnn.train(_net(), TensorSource((_nan_x,), y), likelihood=bnn.Gaussian(), n_epochs=1,
                  batch_size=8, progress=False)
