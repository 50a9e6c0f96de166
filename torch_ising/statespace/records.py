"""Small named records of the state-space model (MODEL.md section 3).

All tensors carry a leading batch dimension B (independent data sets).
"""

from __future__ import annotations

from typing import NamedTuple

import torch


class StateSpaceParams(NamedTuple):
    """Hyperparameters of the state-space model.

        theta_1 ~ Normal(mu, Sigma),  theta_t = F theta_{t-1} + U u_t + xi_t,  xi_t ~ Normal(0, Q)

    Attributes:
        mu: initial mean theta_o, shape (B, D).
        Sigma: initial covariance sigma_o I, shape (B, D, D) (or (B, D) when diagonal).
        Q: state-noise covariance, shape (B, D, D) (or (B, D) when diagonal).
        F: autoregressive matrix, shape (B, D, D) (or (B, D) when diagonal).
        U: input gain, shape (B, D, n_u), or None without input.
    """

    mu: torch.Tensor
    Sigma: torch.Tensor
    Q: torch.Tensor
    F: torch.Tensor
    U: torch.Tensor | None = None


class FilterResult(NamedTuple):
    """Output of the Laplace filter (MODEL.md 3.1).

    Attributes:
        theta_f: filtered means theta_{t|t}, shape (B, T, D).
        sigma_f: filtered covariances W_{t|t}, shape (B, T, D, D) (or (B, T, D) diagonal).
        theta_p: one-step predictions theta_{t|t-1}, shape (B, T, D).
        sigma_p: predicted covariances W_{t|t-1}, shape (B, T, D, D) (or (B, T, D)).
        newton_iterations: Newton iterations summed over bins.
        converged: whether every mode search met its tolerance.
    """

    theta_f: torch.Tensor
    sigma_f: torch.Tensor
    theta_p: torch.Tensor
    sigma_p: torch.Tensor
    newton_iterations: int
    converged: bool


class SmootherResult(NamedTuple):
    """Output of the fixed-interval smoother (MODEL.md 3.2).

    Attributes:
        theta_s: smoothed means theta_{t|T}, shape (B, T, D).
        sigma_s: smoothed covariances W_{t|T}, shape (B, T, D, D) (or (B, T, D)).
        gain: smoother gains A_t = W_{t|t} F^T W_{t+1|t}^{-1}, shape (B, T-1, D, D) (or (B, T-1, D)).
        lag_one: Cov(theta_{t+1}, theta_t | all data) = W_{t+1|T} A_t^T, shape (B, T-1, D, D) (or (B, T-1, D)).
    """

    theta_s: torch.Tensor
    sigma_s: torch.Tensor
    gain: torch.Tensor
    lag_one: torch.Tensor


class EMState(NamedTuple):
    """Where the EM loop stands after an iteration: enough to continue it exactly.

    A fit given this state (``fit(..., resume=state)``) takes the same further
    steps as the uninterrupted fit: the hyperparameters, the warm start of the
    mode searches and, for the accelerated scheme, the Anderson history.

    Attributes:
        iteration: EM iterations done.
        params: the hyperparameters after ``iteration`` iterations.
        theta_s: smoothed means of the last E-step (B, T, D): the next E-step's starting points.
        mll: l of the last E-step (B,) (the published rule compares against it).
        converged: per data set, whether the stopping rule already holds (B,).
        post: mean posterior variance of the last E-step (B,) (the Q = 0 boundary test), or None.
        x: the hyperparameters as the EM schemes' unconstrained vector (B, K), or None
            (the published rule and direct l use ``params``).
        g: the EM image EM(x) (B, K), or None.
        f_prev: the previous residual EM(x) - x (B, K), or None.
        g_prev: the previous EM image (B, K), or None.
        dF: Anderson residual differences (B, K, m), or None (no history yet, or plain EM).
        dG: Anderson image differences (B, K, m), or None.
    """

    iteration: int
    params: StateSpaceParams
    theta_s: torch.Tensor
    mll: torch.Tensor
    converged: torch.Tensor
    post: torch.Tensor | None = None
    x: torch.Tensor | None = None
    g: torch.Tensor | None = None
    f_prev: torch.Tensor | None = None
    g_prev: torch.Tensor | None = None
    dF: torch.Tensor | None = None
    dG: torch.Tensor | None = None
