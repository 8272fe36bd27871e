"""Optimizers that hold a posterior: noise injection inside the optimizer.

    opt = nb.optim.IVON(model.parameters(), lr=0.1, ess=len(x))   # ess: the data size N
    for xb, yb in loader:
        with opt.sampled_params(train=True):      # weights: m + sigma * eps, restored after
            loss = nll(model(xb), yb).mean()
            loss.backward()
        opt.step()
    post = nb.nn.IVONPosterior(model, likelihood, opt)   # an nb.Posterior
"""

from noisybayes.optim.ivon import IVON

__all__ = ["IVON"]
