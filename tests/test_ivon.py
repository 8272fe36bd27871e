"""``nb.optim.IVON``: the reference implementation's updates, the exact mean-field posterior
of a linear-Gaussian model, weight draws with the stated sd restored in ``finally``, and a
network trained by it ending in an ``nb.Posterior``."""

from __future__ import annotations

import copy
import math
import pickle

import pytest
import torch
from torch import nn

import noisybayes as nb
from noisybayes.optim.ivon import hessian_update, posterior_scale

_gen = torch.Generator


def _mlp() -> nn.Module:
    torch.manual_seed(0)
    return nn.Sequential(nn.Linear(3, 8), nn.Tanh(), nn.Linear(8, 1)).double()


def _regression(n: int = 64) -> tuple[torch.Tensor, torch.Tensor]:
    g = _gen().manual_seed(1)
    x = torch.randn(n, 3, generator=g, dtype=torch.float64)
    return x, x.sum(1, keepdim=True).sin() + 0.1 * torch.randn(n, 1, generator=g,
                                                               dtype=torch.float64)


@pytest.mark.parametrize("rescale_lr", [True, False])
def test_updates_equal_the_reference_implementation_step_by_step(rescale_lr):
    """Same hyper-parameters, same noise (the reference draws from the global generator,
    seeded as ours), two draws per step: 20 steps agree to float64 rounding, with the step
    size rescaled by ``hess_init + weight_decay`` (both's default) and without. The second
    group has its own weight decay and ``hess_init`` (as a likelihood's noise scale under
    ``train_ivon``): without the rescaling the two groups step as one run with a weight decay
    per entry, with it as two; after 10 steps the second group's step size changes, and the
    groups step as two runs from the state they had as one."""
    ivon = pytest.importorskip("ivon", reason="the reference implementation (pip install "
                               "ivon-opt) is not installed")
    x, y = _regression()
    net = _mlp()
    ref_net = copy.deepcopy(net)
    hyper = dict(lr=0.05, ess=64, hess_init=0.5, beta1=0.9, beta2=0.99, weight_decay=1e-2,
                 clip_radius=1.0, rescale_lr=rescale_lr)
    own = {"weight_decay": 0.0, "hess_init": 1.0}
    ours = nb.optim.IVON([{"params": net[0].parameters()}, {"params": net[2].parameters(), **own}],
                         **hyper, generator=_gen().manual_seed(5))
    ref = ivon.IVON([{"params": ref_net[0].parameters()},
                     {"params": ref_net[2].parameters(), **own}], **hyper)
    assert len(ours._buffers()) == (2 if rescale_lr else 1)
    runs = []
    rng = torch.get_rng_state()
    try:
        torch.manual_seed(5)
        for step in range(20):
            if step == 10:  # the groups' settings part: ours steps them as two runs from here
                for optimizer in (ours, ref):
                    optimizer.param_groups[1]["lr"] = 0.02
            for _ in range(2):
                with ref.sampled_params(train=True):
                    ref.zero_grad()
                    ((ref_net(x) - y) ** 2).mean().backward()
                with ours.sampled_params(train=True):
                    ((net(x) - y) ** 2).mean().backward()
            ref.step()
            ours.step()
            runs.append(len(ours._buffers()))
            for p, q in zip(net.parameters(), ref_net.parameters(), strict=True):
                torch.testing.assert_close(p, q, rtol=1e-12, atol=1e-12)
    finally:
        torch.set_rng_state(rng)
    for group, ref_group in zip(ours.param_groups, ref.param_groups, strict=True):
        hess = torch.cat([ours.state[p]["hess"].flatten() for p in group["params"]])
        torch.testing.assert_close(hess, ref_group["hess"], rtol=1e-12, atol=1e-12)
    assert runs == ([2] * 20 if rescale_lr else [1] * 10 + [2] * 10)
    assert not torch.equal(net[0].weight, _mlp()[0].weight)  # it did move


def test_hessian_update_is_the_papers_equation_and_stays_positive():
    h, h_hat = torch.tensor([1.0, 0.5]), torch.tensor([-3.0, 2.0])
    beta2, delta = 0.9, 0.1
    expected = beta2 * h + (1 - beta2) * h_hat + 0.5 * (1 - beta2) ** 2 * (h - h_hat) ** 2 / (h + delta)
    torch.testing.assert_close(hessian_update(h, h_hat, beta2, delta), expected)
    # a very negative estimate cannot make h + delta negative
    assert bool((hessian_update(h, torch.tensor([-1e6, -1e6]), 0.0, delta) + delta > 0).all())


def test_draws_have_the_stated_sd_and_leave_the_global_generator_alone():
    """4-sigma bounds: mean within 4 sd/sqrt(n), sd within 4 sd/sqrt(2n) (n=4000 draws)."""
    w = nn.Parameter(torch.full((5,), 2.0, dtype=torch.float64))
    ess, h0, delta = 50.0, 0.3, 0.02
    opt = nb.optim.IVON([w], lr=0.1, ess=ess, hess_init=h0, weight_decay=delta,
                        generator=_gen().manual_seed(0))
    sd = 1 / math.sqrt(ess * (h0 + delta))
    torch.testing.assert_close(opt.posterior_scale(w), torch.full_like(w, sd))
    rng = torch.get_rng_state()
    n = 4000
    draws = []
    for _ in range(n):
        with opt.sampled_params():
            draws.append(w.detach().clone())
    assert torch.equal(torch.get_rng_state(), rng)
    assert torch.equal(w.detach(), torch.full((5,), 2.0, dtype=torch.float64))
    d = torch.stack(draws)
    assert ((d.mean(0) - 2.0) / (sd / math.sqrt(n))).abs().max() < 4
    assert ((d.std(0) / sd - 1) * math.sqrt(2 * n)).abs().max() < 4


def test_the_same_generator_seed_gives_the_same_draws():
    def draw(seed):
        w = nn.Parameter(torch.zeros(4))
        opt = nb.optim.IVON([w], lr=0.1, ess=10, generator=_gen().manual_seed(seed))
        with opt.sampled_params():
            return w.detach().clone()

    assert torch.equal(draw(3), draw(3)) and not torch.equal(draw(3), draw(4))


def test_means_are_restored_when_the_block_raises():
    w = nn.Parameter(torch.arange(3.0))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, generator=_gen().manual_seed(0))
    with pytest.raises(KeyError, match="inside"), opt.sampled_params(train=True):
        assert not torch.equal(w.detach(), torch.arange(3.0))
        raise KeyError("inside")
    assert torch.equal(w.detach(), torch.arange(3.0))
    with pytest.raises(RuntimeError, match="at least one gradient"):
        opt.step()  # the failed block left no gradient sample behind
    with opt.sampled_params():  # and the optimizer is usable again
        pass


def _one_step(opt: nb.optim.IVON, w: torch.Tensor) -> None:
    with opt.sampled_params(train=True):
        (w - 1.0).square().sum().backward()
    opt.step()


def test_the_state_survives_empty_groups_inference_mode_and_loading_from_another():
    """A group without parameters is skipped; a draw under ``torch.inference_mode`` leaves
    the optimizer trainable; a state loaded from another optimizer is a copy (the other's
    later steps do not reach it) and carries ``rescale_lr``."""
    w = nn.Parameter(torch.zeros(3))
    opt = nb.optim.IVON([{"params": [w]}, {"params": []}], lr=0.1, ess=10,
                        generator=_gen().manual_seed(0))
    with torch.inference_mode(), opt.sampled_params():
        pass
    _one_step(opt, w)
    assert opt.state[w]["step"] == 1 and not torch.equal(w.detach(), torch.zeros(3))

    v = nn.Parameter(torch.zeros(3))
    source = nb.optim.IVON([v], lr=0.1, ess=10, rescale_lr=False,
                           generator=_gen().manual_seed(1))
    _one_step(source, v)
    u = nn.Parameter(v.detach().clone())
    loaded = nb.optim.IVON([u], lr=0.1, ess=10, generator=_gen().manual_seed(2))
    loaded.load_state_dict(source.state_dict())
    hess, momentum = (loaded.state[u][k].clone() for k in ("hess", "momentum"))
    _one_step(source, v)
    assert torch.equal(loaded.state[u]["hess"], hess)
    assert torch.equal(loaded.state[u]["momentum"], momentum)
    assert loaded.param_groups[0]["rescale_lr"] is False
    _one_step(loaded, u)
    assert loaded.state[u]["step"] == 2


def test_a_state_of_other_parameters_or_another_optimizer_is_refused_and_changes_nothing():
    w = nn.Parameter(torch.zeros(1, 3))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, generator=_gen().manual_seed(0))
    _one_step(opt, w)
    before = copy.deepcopy(opt.state_dict())
    other = nb.optim.IVON([nn.Parameter(torch.zeros(2, 4))], lr=0.2, ess=10)
    with pytest.raises(ValueError, match=r"^state_dict must hold the state of these parameters, "
                       r"got momentum \(2, 4\) for parameter 0, shaped \(1, 3\)$"):
        opt.load_state_dict(other.state_dict())
    with pytest.raises(ValueError, match=r"^state_dict must be an IVON optimizer's, got param "
                       r"groups without beta1, beta2, clip_radius, ess, hess_init, rescale_lr$"):
        opt.load_state_dict(torch.optim.Adam([w]).state_dict())
    after = opt.state_dict()
    assert after["param_groups"] == before["param_groups"]
    for key, value in before["state"][0].items():
        assert torch.equal(torch.as_tensor(after["state"][0][key]), torch.as_tensor(value)), key
    _one_step(opt, w)
    assert opt.state[w]["step"] == 2


@pytest.mark.parametrize("how", ["deepcopy", "pickle"])
def test_a_copied_or_pickled_optimizer_continues_as_the_original(how):
    """A copy keeps ``mc_samples`` and its generator's state (``torch.optim.Optimizer``
    keeps only defaults, state and groups): the original and the copy take the same steps."""
    w = nn.Parameter(torch.zeros(3))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, mc_samples=3, generator=_gen().manual_seed(0))
    _one_step(opt, w)
    both = (w, opt)
    w2, opt2 = copy.deepcopy(both) if how == "deepcopy" else pickle.loads(pickle.dumps(both))
    assert opt2.mc_samples == 3 and opt2.generator is not opt.generator
    for _ in range(2):
        _one_step(opt, w)
        _one_step(opt2, w2)
    assert torch.equal(w2.detach(), w.detach()) and not torch.equal(w.detach(), torch.zeros(3))
    assert torch.equal(opt2.state[w2]["hess"], opt.state[w]["hess"])


def test_blocks_cannot_be_nested():
    w = nn.Parameter(torch.zeros(2))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, generator=_gen().manual_seed(0))
    nested = pytest.raises(RuntimeError, match="cannot be nested")
    with opt.sampled_params(), nested, opt.sampled_params():
        pass
    assert torch.equal(w.detach(), torch.zeros(2))


def _correlated_regression():
    """An intercept and two correlated, uncentred predictors: the exact posterior's marginal
    sds are 1.4 to 2.9 times the mean-field ones, so the two answers are far apart."""
    g = _gen().manual_seed(0)
    n, noise = 200, 1.0
    x1 = 1.0 + torch.randn(n, generator=g, dtype=torch.float64)
    x2 = 0.9 * x1 + 0.45 * torch.randn(n, generator=g, dtype=torch.float64)
    X = torch.stack([torch.ones(n, dtype=torch.float64), x1, x2], 1)
    beta = torch.tensor([0.5, 1.0, -1.0], dtype=torch.float64)
    y = X @ beta + noise * torch.randn(n, generator=g, dtype=torch.float64)
    return X, y, noise


def test_full_batch_training_reaches_the_optimal_mean_field_gaussian():
    """With ``ess = N`` and ``weight_decay = prior precision / N`` the fixed point is the
    mean-field optimum: means = exact posterior means, sds = ``1/sqrt(Lambda_jj)``.

    The iterates are averaged over the last 6,000 of 8,000 steps at ``beta2 = 0.999``
    (after 1,500 steps at a large step). Tolerance of the sds from the Monte Carlo error:
    the average of ``h`` has the variance of a mean of K = 6,000 Hessian estimates
    ``h_hat_j = g_j eps_j / sigma_j``, whose variance at the optimum is
    ``A_jj^2 + sum_k A_jk^2 sigma_k^2 / sigma_j^2`` (``A = X^T X / (N noise^2)``); the sd's
    relative error is half of ``h``'s. 4 such standard errors (about 4.5 %) are allowed.
    Means: within 0.1 exact posterior sd (the average moves ~0.01 sd from seed to seed).
    """
    X, y, noise = _correlated_regression()
    n, prior_precision = X.shape[0], 1.0
    exact = nb.gaussian_linear_posterior(X, y, noise, prior_precision=prior_precision)
    mean_field_sd = exact.precision.diagonal().rsqrt()
    exact_sd = torch.linalg.inv(exact.precision).diagonal().sqrt()
    assert bool((exact_sd > 1.3 * mean_field_sd).all())

    w = nn.Parameter(torch.zeros(3, dtype=torch.float64))
    opt = nb.optim.IVON([w], lr=0.3, ess=n, beta2=0.99, weight_decay=prior_precision / n,
                        generator=_gen().manual_seed(1))

    def run(steps):
        locs, scales = [], []
        for _ in range(steps):
            with opt.sampled_params(train=True):
                (0.5 * ((y - X @ w) ** 2).mean() / noise**2).backward()
            opt.step()
            locs.append(w.detach().clone())
            scales.append(opt.posterior_scale(w))
        return torch.stack(locs), torch.stack(scales)

    run(1500)
    opt.param_groups[0].update(lr=0.05, beta2=0.999)
    locs, scales = run(8000)
    k = 6000
    loc, scale = locs[-k:].mean(0), scales[-k:].mean(0)

    A = X.T @ X / n / noise**2
    var = 1 / (n * (A.diagonal() + prior_precision / n))
    var_h_hat = A.diagonal() ** 2 + (A**2 * var[None, :] / var[:, None]).sum(1)
    sd_rel_se = 0.5 * (var_h_hat / A.diagonal() ** 2 / k).sqrt()
    assert bool((sd_rel_se < 0.013).all())
    assert ((scale / mean_field_sd - 1).abs() < 4 * sd_rel_se).all(), scale / mean_field_sd
    assert ((loc - exact.loc).abs() < 0.1 * exact_sd).all(), (loc - exact.loc) / exact_sd


def test_a_learned_noise_scale_converges_to_the_known_noise():
    """``y = 2 x - 1 + 0.5 e``, N = 2000: a linear net trained by IVON, the Gaussian
    likelihood's scale by Adam. The scale's maximum-likelihood estimate has sd
    0.5 / sqrt(2N) = 0.008; the weight noise adds a variance of order P/N; 4 % is allowed."""
    g = _gen().manual_seed(2)
    n, noise = 2000, 0.5
    x = torch.randn(n, 1, generator=g)
    y = 2 * x - 1 + noise * torch.randn(n, 1, generator=g)
    torch.manual_seed(0)
    net = nn.Linear(1, 1)
    lik = nb.nn.Gaussian(scale=2.0)
    opt = nb.optim.IVON(net.parameters(), lr=0.2, ess=n, beta2=0.999,
                        generator=_gen().manual_seed(3))
    adam = torch.optim.Adam(lik.parameters(), lr=0.05)
    perm = _gen().manual_seed(4)
    for _ in range(30):
        for idx in torch.randperm(n, generator=perm).split(100):
            adam.zero_grad()
            with opt.sampled_params(train=True):
                loss = -lik.log_prob(net(x[idx]), y[idx]).mean()
                loss.backward()
            opt.step()
            adam.step()
    assert float(lik.scale.detach()) == pytest.approx(noise, rel=0.04)
    torch.testing.assert_close(net.weight.detach(), torch.tensor([[2.0]]), atol=0.05, rtol=0)


def _ivon_trained_net():
    x, y = _regression(128)
    net = _mlp()
    lik = nb.nn.Gaussian(scale=0.1, learn_scale=False)
    opt = nb.optim.IVON(net.parameters(), lr=0.1, ess=len(x), beta2=0.999,
                        generator=_gen().manual_seed(6))
    for _ in range(200):
        with opt.sampled_params(train=True):
            (-lik.log_prob(net(x), y).mean()).backward()
        opt.step()
    return net, lik, opt, x, y


def test_a_trained_network_ends_in_a_posterior_with_epistemic_and_aleatoric_parts():
    net, lik, opt, x, y = _ivon_trained_net()
    post = nb.nn.IVONPosterior(net, lik, opt, data=(x, y))
    assert isinstance(post, nb.Posterior)
    assert post.info.family == "ivon" and post.info.n_steps == 200 and post.info.n_data == 128
    assert list(post.summary().index) == ["0.weight", "0.bias", "2.weight", "2.bias"]

    n = 4000
    draws = post.sample(n, seed=0)
    scale = opt.posterior_scale(net[0].weight)
    assert draws["0.weight"].shape == (n, 8, 3)
    assert ((draws["0.weight"].std(0) / scale - 1) * math.sqrt(2 * n)).abs().max() < 4.5

    pred = post.predict(x[:5], n_samples=200, seed=1)
    assert pred.mean.shape == (5, 1)
    # aleatoric: the likelihood's fixed scale; total^2 = epistemic^2 + aleatoric^2
    torch.testing.assert_close(pred.aleatoric_sd, torch.full((5, 1), 0.1, dtype=torch.float64))
    assert bool((pred.epistemic_sd > 0).all())
    torch.testing.assert_close(pred.sd ** 2, pred.epistemic_sd ** 2 + pred.aleatoric_sd ** 2)
    # the epistemic sd is the spread of the outputs under the optimizer's own draws
    outs = []
    for _ in range(2000):
        with torch.no_grad(), opt.sampled_params():
            outs.append(net(x[:5]))
    by_block = torch.stack(outs).std(0)
    assert ((pred.epistemic_sd / by_block - 1).abs() < 4 / math.sqrt(2 * 200) + 0.05).all()
    assert torch.equal(post.predict(x[:5], n_samples=50, seed=2).mean,
                       post.predict(x[:5], n_samples=50, seed=2).mean)
    assert post.to_arviz(n_draws=20, seed=0).posterior_predictive["y"].shape == (1, 20, 128)


def test_the_posterior_keeps_a_copy_of_the_optimizers_state():
    net, lik, opt, x, y = _ivon_trained_net()
    post = nb.nn.IVONPosterior(net, lik, opt)
    before = post.sample(3, seed=0)["0.weight"]
    with opt.sampled_params(train=True):
        (-lik.log_prob(net(x), y).mean()).backward()
    opt.step()
    torch.testing.assert_close(post.sample(3, seed=0)["0.weight"], before, rtol=0, atol=0)


@pytest.mark.parametrize(
    ("kwargs", "error", "message"),
    [
        ({"lr": 0.0}, ValueError, "lr must be > 0, got 0.0"),
        ({"ess": -1.0}, ValueError, "ess must be > 0, got -1.0"),
        ({"hess_init": 0}, ValueError, "hess_init must be > 0, got 0"),
        ({"beta1": 1.0}, ValueError, r"beta1 must be in \[0, 1\), got 1.0"),
        ({"beta2": -0.1}, ValueError, r"beta2 must be in \[0, 1\), got -0.1"),
        ({"weight_decay": -1e-4}, ValueError, "weight_decay must be >= 0 and finite, got -0.0001"),
        ({"clip_radius": 0.0}, ValueError, r"clip_radius must be > 0 \(inf: no clipping\), got 0.0"),
        ({"mc_samples": 0}, ValueError, "mc_samples must be an integer >= 1, got 0"),
        ({"lr": "fast"}, TypeError, "lr must be a number > 0, got 'fast'"),
        ({"generator": 3}, TypeError, "generator must be a torch.Generator or None, got 3"),
        ({"rescale_lr": "no"}, TypeError, "rescale_lr must be True or False, got 'no'"),
    ],
)
def test_argument_errors_name_the_argument_and_the_value(kwargs, error, message):
    args = {"lr": 0.1, "ess": 10.0, **kwargs}
    with pytest.raises(error, match=message):
        nb.optim.IVON([nn.Parameter(torch.zeros(2))], **args)


def test_misuse_errors_say_what_to_do():
    w = nn.Parameter(torch.zeros(2))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, generator=_gen().manual_seed(0))
    with pytest.raises(RuntimeError, match=r"sampled_params\(train=True\)"):
        opt.step()
    with pytest.raises(ValueError, match="param must be one of the optimizer's parameters"):
        opt.posterior_scale(torch.zeros(2))
    with pytest.raises(ValueError, match="optimizer must hold parameters of network"):
        nb.nn.IVONPosterior(nn.Linear(2, 1), nb.nn.Gaussian(), opt)
    with pytest.raises(TypeError, match="optimizer must be a noisybayes.optim.IVON"):
        nb.nn.IVONPosterior(nn.Linear(2, 1), nb.nn.Gaussian(),
                            torch.optim.SGD([w], lr=0.1))  # type: ignore[arg-type]
    # a group added after a draw has no gradient of its own: it is not stepped with zeros
    # alongside the group drawn before it (which shares its settings)
    with opt.sampled_params(train=True):
        w.sum().backward()
    later = nn.Parameter(torch.ones(2))
    opt.add_param_group({"params": [later]})
    with pytest.raises(RuntimeError, match=r"sampled_params\(train=True\)"):
        opt.step()
    assert torch.equal(later, torch.ones(2))


def test_step_with_a_closure_averages_mc_samples_draws():
    w = nn.Parameter(torch.zeros(2, dtype=torch.float64))
    opt = nb.optim.IVON([w], lr=0.1, ess=10, mc_samples=3, generator=_gen().manual_seed(0))
    calls = []

    def closure():
        with opt.sampled_params(train=True):
            loss = ((w - 1.0) ** 2).sum()
            loss.backward()
        calls.append(float(loss.detach()))
        return loss

    loss = opt.step(closure)
    assert len(calls) == 3 and float(loss) == pytest.approx(sum(calls) / 3)
    assert opt.state[w]["n_draws"] == 0 and bool((w > 0).all())


def test_posterior_scale_is_the_stated_formula():
    torch.testing.assert_close(posterior_scale(torch.tensor([0.5]), 0.5, 4.0), torch.tensor([0.5]))


@pytest.mark.skipif(not torch.cuda.is_available(), reason="needs a CUDA GPU")
def test_training_and_prediction_on_a_gpu_match_the_cpu_draws():
    """A CPU generator drives noise for GPU weights: the same seed gives the CPU run's steps."""
    x, y = _regression(128)

    def run(device):
        net = _mlp().to(device)
        lik = nb.nn.Gaussian(scale=0.1, learn_scale=False).to(device)
        opt = nb.optim.IVON(net.parameters(), lr=0.1, ess=128, generator=_gen().manual_seed(6))
        for _ in range(20):
            with opt.sampled_params(train=True):
                (-lik.log_prob(net(x.to(device)), y.to(device)).mean()).backward()
            opt.step()
        pred = nb.nn.IVONPosterior(net, lik, opt).predict(x[:5].to(device), seed=0)
        return net[0].weight.detach().cpu(), pred.epistemic_sd.cpu()

    (w_cpu, sd_cpu), (w_gpu, sd_gpu) = run("cpu"), run("cuda")
    torch.testing.assert_close(w_gpu, w_cpu, rtol=1e-6, atol=1e-8)
    torch.testing.assert_close(sd_gpu, sd_cpu, rtol=1e-6, atol=1e-8)
