"""Pseudo-likelihood of the Ising model, and the observation model that puts it in the filter.

Any order is supported. The pseudo-log-likelihood of R patterns x_r (MODEL.md
section 5; Besag 1975) replaces R [y . theta - psi(theta)] by

    PL(theta) = sum_r sum_i log p(x_{r,i} | x_{r,-i}, theta)
              = sum_r sum_i [ x_{r,i} h_{r,i} - log(1 + exp(h_{r,i})) ],
    h_{r,i}   = sum_{S containing i} theta_S prod_{j in S, j != i} x_{r,j},

so no sum over 2^N patterns is needed. With s = sigmoid(h), w = s (1 - s) and
a_{r,i,S} = dh_{r,i}/dtheta_S = prod_{j in S, j != i} x_{r,j} (zero unless i in S):

    grad_S   = sum_r sum_{i in S} (x_{r,i} - s_{r,i}) a_{r,i,S},
    hess_ST  = -sum_r sum_{i in S and T} w_{r,i} a_{r,i,S} a_{r,i,T},
    hess_SS  = -sum_r sum_{i in S} w_{r,i} a_{r,i,S}          (a is 0/1).

Pairwise models use matrix products (h = theta_1 + x J); other orders gather
the products a_{r,i,S} over the subsets containing each neuron. Everything is
batched over bins, trials, data sets and neurons.

How :class:`PseudoLikelihood` plugs into the Laplace filter (Donner et al. 2017):

* the filtered mean is the mode of PL_t(theta) - 1/2 (theta - theta_{t|t-1})^T
  W_{t|t-1}^{-1} (theta - theta_{t|t-1}) (``log_lik`` / ``value_grad_hess``: the
  pseudo-log-likelihood of the R trials of bin t, closed-form gradient, and
  Hessian diagonal (``diagonal=True``) or full Hessian);
* the filtered covariance is W_{t|t} = (R diag(G~) + W_{t|t-1}^{-1})^{-1}, with
  the Fisher diagonal G~_SS = eta~_S (1 - eta~_S) of the approximate eta~ at the
  mode (``precision``; ``covariance="fisher"``, the 2017 scheme), or the negative
  pseudo-log-likelihood Hessian (``covariance="pseudo"``);
* with ``covariance="fisher"`` the mode search is calibrated to that covariance
  (``calibrate=True``, ``score_scale``): the pseudo-likelihood counts an
  interaction theta_S once in each of the |S| conditionals that contain it, so
  its curvature H_SS = -hess_SS PL is about |S| times the Fisher information
  R G~_SS at weak coupling and low rates (about 2x for pairs), while its score
  is no more informative than the likelihood's. Maximising PL + prior therefore
  weights the data about |S| times more than the filtered covariance
  (R diag(G~) + W_{t|t-1}^{-1})^{-1} says, the filtered means jitter more than
  that covariance allows, and the M-step reads the excess as state noise (on
  the N = 12 accuracy benchmark Q settles at 0.0100 instead of the exact
  fit's 0.00056). The calibration is the magnitude adjustment of a composite
  likelihood (Pauli, Racugno & Ventura 2011; Ribatet, Cooley & Davison 2012),
  per parameter: the score of theta_S is scaled by
  a_S = max(1/|S|, min(1, R G~_SS / H_SS)), both at theta_{t|t-1}, so the
  mode weights the data by the same information R G~ as the covariance (the
  floor 1/|S| is the most the |S|-fold counting can account for; it bounds the
  adjustment where a mean-field G~ is poor under strong coupling). For a diagonal
  prior this is the mode of PL_t(theta) - 1/2 sum_S (p_S / a_S)
  (theta_S - theta_{t|t-1,S})^2. Without a prior the estimating equations,
  hence the pseudo-likelihood estimator, are unchanged. ``calibrate=False``
  gives the uncalibrated scheme of the published library;
* the log marginal likelihood uses R [y_t . theta - psi~(theta)] with the
  approximate psi~ (``marginal_log_lik``);
* eta_s = eta~(theta_s) (``expectation``).

With an observation ``mask`` (True = observed) every sum over trials runs over the
observed trials of the bin only (each term of trial r is weighted by c_{t,r} in
{0, 1}), and R becomes R_t = sum_r c_{t,r} in the precision, the calibration and the
marginal likelihood; a bin with R_t = 0 contributes nothing.

The published library, like this diagonal scheme, assumes F = I (no learned
autoregressive F): ``fit(method="pseudo", state_ar=...)`` is refused.
"""

from __future__ import annotations

from typing import Any

import torch
from torch.nn.functional import softplus

from .._validation import check_N_order, check_spikes, n_params
from ..basis import subsets, sufficient_stats
from ..likelihood import ObservationModel
from ..optim.newton import NewtonResult
from ..optim.newton_cg import newton_cg_ascent
from ..synthesis import _neighbour_index
from ._common import ApproxMoments, split_pairwise
from .registry import ETA_METHODS, approx_moments

__all__ = [
    "local_fields",
    "pseudo_log_likelihood",
    "pseudo_value_grad_hess",
    "pseudo_hessian_vector",
    "PseudoLikelihood",
    "build_pseudo_observation",
    "COVARIANCES",
]

#: How the filtered covariance is formed (see the module docstring).
COVARIANCES = ("fisher", "pseudo")


def _check(theta: torch.Tensor, spikes: torch.Tensor, N: int, order: int) -> tuple[torch.Tensor, int, int]:
    N, order = check_N_order(N, order)
    D = n_params(N, order)
    if not isinstance(theta, torch.Tensor) or not theta.is_floating_point():
        raise ValueError("theta must be a floating-point torch.Tensor of shape (..., D)")
    if theta.ndim < 1 or theta.shape[-1] != D:
        raise ValueError(
            f"theta must have shape (..., D) with D={D} for N={N}, order={order}; got {tuple(theta.shape)}"
        )
    if not isinstance(spikes, torch.Tensor):
        raise ValueError("spikes must be a torch.Tensor of shape (..., R, N)")
    if spikes.ndim < 2 or spikes.shape[-1] != N:
        raise ValueError(f"spikes must have shape (..., R, N) with N={N}; got {tuple(spikes.shape)}")
    return spikes.to(theta.dtype), N, order


def _products(x: torch.Tensor, N: int, order: int) -> tuple[torch.Tensor, torch.Tensor]:
    """a_{r,i,k} = prod_{j in S_k(i), j != i} x_{r,j} for the K subsets S_k(i) containing i.

    Returns (a (..., R, N, K), params (N, K) index of theta_S, padded with D).
    """
    params_np, others_np = _neighbour_index(N, order)
    params = torch.from_numpy(params_np).to(x.device)
    others = torch.from_numpy(others_np).to(x.device)
    xp = torch.cat([x, torch.ones_like(x[..., :1])], dim=-1)
    return xp[..., others].prod(-1), params


def local_fields(theta: torch.Tensor, spikes: torch.Tensor, N: int, order: int = 2) -> torch.Tensor:
    """h_{r,i} = sum_{S containing i} theta_S prod_{j in S, j != i} x_{r,j}, shape (..., R, N).

    Args:
        theta: natural parameters (..., D).
        spikes: binary patterns (..., R, N); leading dimensions broadcast with theta's.
        N: number of neurons.
        order: interaction order.
    """
    x, N, order = _check(theta, spikes, N, order)
    return _fields(theta, x, N, order)


def _fields(theta: torch.Tensor, x: torch.Tensor, N: int, order: int) -> torch.Tensor:
    if order == 1:
        return theta[..., None, :].expand(*torch.broadcast_shapes(theta.shape[:-1], x.shape[:-2]), *x.shape[-2:])
    if order == 2:
        h, J = split_pairwise(theta, N)
        return h[..., None, :] + x @ J
    a, params = _products(x, N, order)
    th = torch.cat([theta, theta.new_zeros(*theta.shape[:-1], 1)], dim=-1)[..., params]  # (..., N, K)
    return (a * th[..., None, :, :]).sum(-1)


def pseudo_log_likelihood(
    theta: torch.Tensor, spikes: torch.Tensor, N: int, order: int = 2, weights: torch.Tensor | None = None
) -> torch.Tensor:
    """PL(theta) = sum_r c_r sum_i [x_{r,i} h_{r,i} - log(1 + exp(h_{r,i}))], shape (...). Differentiable.

    Args:
        theta: natural parameters (..., D), e.g. (T, D) for all bins or (B, D).
        spikes: binary patterns (..., R, N) matching theta's leading dimensions
            (e.g. (T, R, N)); they broadcast.
        N: number of neurons.
        order: interaction order (any).
        weights: trial weights c_r (..., R), e.g. an observation mask (1 = observed); None: all 1.

    Returns:
        The pseudo-log-likelihood summed over trials and neurons, shape (...).
    """
    x, N, order = _check(theta, spikes, N, order)
    h = _fields(theta, x, N, order)
    terms = x * h - softplus(h)
    if weights is not None:
        terms = terms * weights[..., None]
    return terms.sum((-1, -2))


def _scatter(values: torch.Tensor, params: torch.Tensor, D: int) -> torch.Tensor:
    """Sum values (..., N, K) into (..., D) at params (N, K) (index D is the dropped pad)."""
    out = values.new_zeros(*values.shape[:-2], D + 1)
    out = out.index_add(-1, params.reshape(-1), values.reshape(*values.shape[:-2], -1))
    return out[..., :D]


def pseudo_value_grad_hess(
    theta: torch.Tensor,
    spikes: torch.Tensor,
    N: int,
    order: int = 2,
    diagonal: bool = True,
    weights: torch.Tensor | None = None,
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """Closed-form PL, its gradient and its Hessian (diagonal or full); see the module docstring.

    Args:
        theta: natural parameters (..., D).
        spikes: binary patterns (..., R, N).
        N: number of neurons.
        order: interaction order (any).
        diagonal: return the Hessian diagonal (..., D) instead of (..., D, D).
        weights: trial weights c_r (..., R) (an observation mask); None: all 1.

    Returns:
        value (...), grad (..., D), hess (..., D) or (..., D, D).
    """
    x, N, order = _check(theta, spikes, N, order)
    D = theta.shape[-1]
    h = _fields(theta, x, N, order)
    s = torch.sigmoid(h)
    terms = x * h - softplus(h)
    e = x - s
    w = s * (1.0 - s)
    if weights is not None:  # every term of trial r is scaled by c_r
        c = weights[..., None]
        terms, e, w = terms * c, e * c, w * c
    value = terms.sum((-1, -2))
    if order == 2 and diagonal:
        iu = torch.triu_indices(N, N, 1, device=theta.device)
        M = e.transpose(-1, -2) @ x  # M_ij = sum_r e_ri x_rj
        grad = torch.cat([e.sum(-2), (M + M.transpose(-1, -2))[..., iu[0], iu[1]]], dim=-1)
        Wx = w.transpose(-1, -2) @ x
        hess = -torch.cat([w.sum(-2), (Wx + Wx.transpose(-1, -2))[..., iu[0], iu[1]]], dim=-1)
        return value, grad, hess
    if order == 1:
        grad = e.sum(-2)
        hd = -w.sum(-2)
        return value, grad, hd if diagonal else torch.diag_embed(hd)
    a, params = _products(x, N, order)  # (..., R, N, K)
    grad = _scatter(torch.einsum("...rn,...rnk->...nk", e, a), params, D)
    if diagonal:
        return value, grad, -_scatter(torch.einsum("...rn,...rnk->...nk", w, a), params, D)
    C = torch.einsum("...rnk,...rnl->...nkl", a * w[..., None], a)  # (..., N, K, K)
    idx = (params[:, :, None] * (D + 1) + params[:, None, :]).reshape(-1)
    H = C.new_zeros(*C.shape[:-3], (D + 1) ** 2).index_add(-1, idx, C.reshape(*C.shape[:-3], -1))
    H = H.reshape(*C.shape[:-3], D + 1, D + 1)[..., :D, :D]
    return value, grad, -H


def pseudo_hessian_vector(
    theta: torch.Tensor, spikes: torch.Tensor, v: torch.Tensor, N: int, order: int = 2
) -> torch.Tensor:
    """Matrix-free Hessian-vector product of the pseudo-log-likelihood, (hess PL) v, shape (..., D).

        (hess PL v)_S = -sum_r sum_{i in S} w_{r,i} z_{r,i} a_{r,i,S},   z_{r,i} = sum_T a_{r,i,T} v_T,

    which costs as much as one gradient (for pairwise models z = v_1 + x V, with V
    the symmetric matrix of the pair entries of v). No D x D matrix is formed.

    Args:
        theta: natural parameters (..., D).
        spikes: binary patterns (..., R, N).
        v: vectors (..., D).
        N: number of neurons.
        order: interaction order (any).
    """
    x, N, order = _check(theta, spikes, N, order)
    s = torch.sigmoid(_fields(theta, x, N, order))
    return _hess_vec(s * (1.0 - s), x, v, N, order)


def _hess_vec(w: torch.Tensor, x: torch.Tensor, v: torch.Tensor, N: int, order: int) -> torch.Tensor:
    D = v.shape[-1]
    if order == 1:
        return -w.sum(-2) * v
    if order == 2:
        v1, V = split_pairwise(v, N)
        u = w * (v1[..., None, :] + x @ V)
        iu = torch.triu_indices(N, N, 1, device=v.device)
        M = u.transpose(-1, -2) @ x
        return -torch.cat([u.sum(-2), (M + M.transpose(-1, -2))[..., iu[0], iu[1]]], dim=-1)
    a, params = _products(x, N, order)
    vp = torch.cat([v, v.new_zeros(*v.shape[:-1], 1)], dim=-1)[..., params]  # (..., N, K)
    z = (a * vp[..., None, :, :]).sum(-1)  # (..., R, N)
    return -_scatter(torch.einsum("...rn,...rnk->...nk", w * z, a), params, D)


def _pl_parts(
    theta: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, N: int, order: int
) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
    """(PL (...), residuals e = c (x - s), weights w = c s (1 - s)) with s = sigmoid(h), h the local fields."""
    h = _fields(theta, x, N, order)
    s = torch.sigmoid(h)
    terms = x * h - softplus(h)
    e = x - s
    w = s * (1.0 - s)
    if c is not None:  # the unobserved trials drop out of every sum over trials
        terms, e, w = terms * c[..., None], e * c[..., None], w * c[..., None]
    return terms.sum((-1, -2)), e, w


def _pl_grad_hdiag(
    theta: torch.Tensor, x: torch.Tensor, c: torch.Tensor | None, e: torch.Tensor, w: torch.Tensor, N: int, order: int
) -> tuple[torch.Tensor, torch.Tensor]:
    """grad PL and the diagonal of hess PL from :func:`_pl_parts` (pairwise: two matrix products)."""
    if order == 2:
        iu = torch.triu_indices(N, N, 1, device=theta.device)
        M = e.transpose(-1, -2) @ x
        g = torch.cat([e.sum(-2), (M + M.transpose(-1, -2))[..., iu[0], iu[1]]], dim=-1)
        Wx = w.transpose(-1, -2) @ x
        hd = -torch.cat([w.sum(-2), (Wx + Wx.transpose(-1, -2))[..., iu[0], iu[1]]], dim=-1)
        return g, hd
    _, g, hd = pseudo_value_grad_hess(theta, x, N, order, diagonal=True, weights=c)
    return g, hd


class PseudoLikelihood(ObservationModel):
    """Observation model of the Donner et al. (2017) scheme: pseudo-likelihood mode, approximate moments.

    Args:
        spikes: binary spikes (B, T, R, N) (or (T, R, N) for one data set).
        order: interaction order (any for the pseudo-likelihood; the eta
            method must support it: TAP and Bethe need order <= 2).
        eta_method: a name in :data:`torch_ising.approx.registry.ETA_METHODS`
            ("tap", "bethe_bp", "bethe_cccp", "bethe_hybrid", "mc", "exact").
        eta_options: keyword options for the eta method (tolerances, damping...).
        diagonal: keep diagonal covariances (the 2017 scheme, D up to many
            thousands); False keeps full D x D covariances (small D only).
        covariance: "fisher" (R eta~ (1 - eta~) diagonal; with ``diagonal=False``
            only for ``eta_method="exact"``, which gives the full Fisher) or
            "pseudo" (the negative pseudo-log-likelihood Hessian).
        y: the sufficient statistics (B, T, D) if already computed.
        R: trials per bin (default: spikes.shape[-2]).
        mask: boolean (B, T, R), True = observed (default: all); the sums over trials run
            over the observed ones, and R_t = their number replaces R.
        calibrate: with ``covariance="fisher"`` and diagonal covariances, scale
            the pseudo-likelihood score in the filter's mode search so that it
            weights the data by the Fisher information of the covariance
            (:meth:`score_scale`, see the module docstring); False gives the
            uncalibrated scheme of the published library.

    Attributes:
        B, T, D, R, N, order: sizes.
        diagonal: whether the filter keeps diagonal covariances.
        separate_precision: True with ``covariance="fisher"``: the filter takes
            the covariance from :meth:`precision`, not from the mode search's Hessian.
        calibrate: whether :meth:`score_scale` calibrates the mode search.
        ascends_mll: False: EM of this scheme does not ascend the l it reports (its mode is the
            pseudo-likelihood's, its covariance the approximate Fisher's; plain EM lowers l near
            the fixed point), so the accelerated rule does not reject steps for lowering l.
    """

    ascends_mll = False

    def __init__(
        self,
        spikes: Any,
        order: int = 2,
        *,
        eta_method: str = "tap",
        eta_options: dict[str, Any] | None = None,
        diagonal: bool = True,
        covariance: str = "fisher",
        y: torch.Tensor | None = None,
        R: int | None = None,
        dtype: torch.dtype = torch.float64,
        calibrate: bool = True,
        mask: torch.Tensor | None = None,
    ) -> None:
        x = check_spikes(spikes, (3, 4))
        if x.ndim == 3:
            x = x.unsqueeze(0)
        self.x = x.to(dtype)
        self.B, self.T, R_x, N = x.shape
        self.N, self.order = check_N_order(N, order)
        self.D = n_params(self.N, self.order)
        self.R = int(R_x if R is None else R)
        #: trial weights c_{t,r} (B, T, R) of the observed trials, or None (all observed)
        self.c = None if mask is None else mask.to(device=x.device, dtype=dtype).expand(self.B, self.T, R_x)
        #: observed trials R_t per bin (B, T)
        self.R_t = (
            torch.full((self.B, self.T), float(self.R), dtype=dtype, device=x.device)
            if self.c is None
            else self.c.sum(-1)
        )
        if self.c is not None:
            self.R = max(1, int(self.R_t.max()))
            self.R_scale = self.R_t.amax(1).clamp_min(1.0)  # per data set, as ExactIsing
        if eta_method not in ETA_METHODS:
            raise ValueError(f"eta_method must be one of {sorted(ETA_METHODS)}, got {eta_method!r}")
        if covariance not in COVARIANCES:
            raise ValueError(f"covariance must be one of {COVARIANCES}, got {covariance!r}")
        if not diagonal and covariance == "fisher" and eta_method != "exact":
            raise ValueError(
                "covariance='fisher' with full covariances (diagonal=False) needs the full Fisher matrix, which "
                f"eta_method={eta_method!r} does not give; use covariance='pseudo' or diagonal=True"
            )
        if y is None:
            y = torch.stack(
                [
                    sufficient_stats(self.x[b], self.order, dtype=dtype, mask=None if mask is None else self.c[b] > 0)
                    for b in range(self.B)
                ]
            )
        if y.shape != (self.B, self.T, self.D):
            raise ValueError(f"y must have shape (B, T, D) = ({self.B}, {self.T}, {self.D}); got {tuple(y.shape)}")
        self.y = y.to(dtype)
        self.eta_method = eta_method
        self.eta_options = dict(eta_options or {})
        self.diagonal = bool(diagonal)
        self.covariance = covariance
        self.separate_precision = covariance == "fisher"
        self.calibrate = bool(calibrate)
        # the last (theta, moments) of a deterministic eta method, see :meth:`moments`
        self._last: tuple[torch.Tensor, ApproxMoments, bool] | None = None
        self._min_scale = torch.tensor([1.0 / len(S) for S in subsets(self.N, self.order)], dtype=dtype)
        # validates the eta method's support for this order now rather than inside the filter
        probe = torch.zeros(1, self.D, dtype=dtype, device=self.x.device)
        approx_moments(probe, self.N, self.order, eta_method, **self._quick())

    def _quick(self) -> dict[str, Any]:
        if self.eta_method == "mc":
            return {**self.eta_options, "n_chains": 4, "n_sweeps": 2, "burn_in": 0, "with_psi": False}
        return self.eta_options

    # ------------------------------------------------------------------ filter interface
    def _c(self, t: int | None = None) -> torch.Tensor | None:
        """The trial weights of bin t (B, R), or of every bin (B, T, R); None without a mask."""
        if self.c is None:
            return None
        return self.c if t is None else self.c[:, t]

    def log_lik(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        """Pseudo-log-likelihood of the (observed) trials of bin t, theta (B, D) -> (B,)."""
        return pseudo_log_likelihood(theta, self.x[:, t], self.N, self.order, self._c(t))

    def log_lik_all(self, theta: torch.Tensor) -> torch.Tensor:
        """Pseudo-log-likelihood of every bin, theta (B, T, D) -> (B, T)."""
        return pseudo_log_likelihood(theta, self.x, self.N, self.order, self._c())

    def value_grad_hess(self, theta: torch.Tensor, t: int) -> tuple[torch.Tensor, torch.Tensor, torch.Tensor]:
        """Closed-form PL, gradient and Hessian (diagonal when ``self.diagonal``) of bin t."""
        return pseudo_value_grad_hess(
            theta, self.x[:, t], self.N, self.order, diagonal=self.diagonal, weights=self._c(t)
        )

    def mode(
        self,
        theta0: torch.Tensor,
        t: int,
        prior_mean: torch.Tensor,
        prior_prec: torch.Tensor,
        *,
        tol: float = 1e-8,
        scale: float | None = None,
        max_iter: int = 100,
        cg_max_iter: int = 100,
    ) -> NewtonResult:
        """The filter's mode search for bin t by truncated Newton (Newton-CG), for diagonal priors.

        Maximises L(theta) = PL_t(theta) - 1/2 (theta - m)^T diag(p) (theta - m) with
        m = ``prior_mean`` and p = ``prior_prec`` (B, D). Each Newton direction solves
        (-hess L) d = grad L by conjugate gradients preconditioned with diag(-hess L),
        using matrix-free Hessian-vector products (:func:`pseudo_hessian_vector`), to
        the relative residual min(0.5, sqrt(|grad L|)) (a forcing sequence that gives
        superlinear convergence); the step is then halved until the Armijo condition
        holds (:func:`torch_ising.optim.newton_cg.newton_cg_ascent`). A diagonal Newton
        step (what the generic filter takes with a diagonal Hessian) converges slowly
        when the pair parameters are coupled; this does not.

        Returns:
            :class:`torch_ising.optim.newton.NewtonResult`; ``hess`` is the diagonal of hess L
            (B, D); ``converged`` is max |grad L| / scale <= tol.
        """
        x = self.x[:, t]
        c = self._c(t)
        N, order = self.N, self.order
        scale = float(self.R) if scale is None else scale  # a float, or per data set (B, 1)

        def evaluate(th: torch.Tensor) -> tuple[torch.Tensor, tuple[torch.Tensor, torch.Tensor]]:
            # L(th), and the residuals e and weights w of PL_t that its derivatives reuse
            pl, e, w = _pl_parts(th, x, c, N, order)
            diff = th - prior_mean
            return pl - 0.5 * (prior_prec * diff * diff).sum(-1), (e, w)

        def derivatives(th: torch.Tensor, aux: tuple[torch.Tensor, torch.Tensor]) -> tuple[torch.Tensor, torch.Tensor]:
            g, hd = _pl_grad_hdiag(th, x, c, *aux, N, order)
            return g - prior_prec * (th - prior_mean), hd - prior_prec

        def curvature(th: torch.Tensor, aux: tuple[torch.Tensor, torch.Tensor], v: torch.Tensor) -> torch.Tensor:
            # (-hess L) v = -(hess PL_t) v + diag(p) v
            return -_hess_vec(aux[1], x, v, N, order) + prior_prec * v

        return newton_cg_ascent(
            evaluate, derivatives, curvature, theta0, tol=tol, scale=scale, max_iter=max_iter, cg_max_iter=cg_max_iter
        )

    # ------------------------------------------------------------------ all bins at once (joint E-step)
    def joint_terms(self, theta: torch.Tensor):
        """PL of every bin, its gradient, Hessian diagonal and a Hessian-vector product, theta (B, T, D).

        Returns:
            (value (B, T), grad (B, T, D), hess diagonal (B, T, D), hv) where hv(v) = (hess PL_t) v_t
            for v (B, T, D), all bins in one call (:func:`pseudo_hessian_vector`, at this theta).
        """
        x, c, N, order = self.x, self._c(), self.N, self.order
        pl, e, w = _pl_parts(theta, x, c, N, order)
        g, hd = _pl_grad_hdiag(theta, x, c, e, w, N, order)

        def hv(v: torch.Tensor) -> torch.Tensor:
            return _hess_vec(w, x, v, N, order)

        return pl, g, hd, hv

    def precision_all(self, theta: torch.Tensor) -> torch.Tensor:
        """The diagonal observation precision of every bin (B, T, D): as :meth:`precision`, for all t."""
        if not self.diagonal:
            raise ValueError("precision_all is defined for diagonal covariances")
        if self.covariance == "pseudo":
            return -pseudo_value_grad_hess(theta, self.x, self.N, self.order, diagonal=True, weights=self._c())[2]
        return self.R_t[..., None] * self.moments(theta, with_psi=False).fisher_diag

    def score_scale_all(self, theta: torch.Tensor) -> torch.Tensor | None:
        """One calibration per parameter for the whole path, a_S = max(1/|S|, min(1, sum_t R_t G~_SS / sum_t H_SS)).

        The curvatures H_t = -hess_SS PL_t and the precisions R_t G~_t of every bin at theta (B, T, D)
        are summed over time (the information of the whole path); shape (B, 1, D), or None
        without calibration. Used by the joint E-step (:mod:`torch_ising.statespace.joint_diagonal`).
        """
        if not (self.calibrate and self.diagonal and self.covariance == "fisher"):
            return None
        _, _, hd = pseudo_value_grad_hess(theta, self.x, self.N, self.order, diagonal=True, weights=self._c())
        return self._calibration(-hd.sum(-2, keepdim=True), self.precision_all(theta).sum(-2, keepdim=True))

    def moments(self, theta: torch.Tensor, with_psi: bool = True) -> ApproxMoments:
        """Approximate psi, eta, Fisher diagonal of theta (..., D) by the chosen eta method.

        A deterministic method's last result is kept and returned again for the same theta
        (equal values): the filter asks for the moments at theta_{t|t} (the precision of bin t)
        and, with F = I, again at theta_{t+1|t} = theta_{t|t} (the calibration of bin t + 1).
        """
        last = self._last
        # not where a derivative is wanted; and tensors made in inference mode are reused only there
        keep = self.eta_method != "mc" and not theta.requires_grad
        inference = torch.is_inference_mode_enabled()
        if keep and last is not None and last[2] == inference and last[0].shape == theta.shape:
            if torch.equal(last[0], theta):
                return last[1]
        opts = dict(self.eta_options)
        if self.eta_method == "mc" and not with_psi:
            opts["with_psi"] = False
        out = approx_moments(theta, self.N, self.order, self.eta_method, **opts)
        if keep:
            self._last = (theta.clone(), out, inference)
        return out

    def precision(self, theta: torch.Tensor, t: int) -> torch.Tensor:
        """Observation precision at the mode: R_t diag(eta~ (1 - eta~)) ("fisher") or -hess PL ("pseudo")."""
        if self.covariance == "pseudo":
            return -self.value_grad_hess(theta, t)[2]
        r = self.R_t[:, t, None]
        if not self.diagonal:  # eta_method == "exact" (checked in __init__)
            from ..moments import fisher

            return r[..., None] * fisher(theta, self.N, self.order)
        return r * self.moments(theta, with_psi=False).fisher_diag

    def score_scale(self, theta: torch.Tensor, t: int) -> torch.Tensor | None:
        """Calibration of the mode search for bin t: a_S = max(1/|S|, min(1, R G~_SS / H_SS)), shape (B, D).

        H_SS = -hess_SS PL_t and G~_SS = eta~_S (1 - eta_S~), both at ``theta``
        (the filter passes the prediction theta_{t|t-1}). The filter maximises
        PL_t(theta) - 1/2 sum_S (p_S / a_S) (theta_S - theta_{t|t-1,S})^2, i.e. it
        scales the score of theta_S by a_S, so the mode weights the data by the
        Fisher information R G~ that :meth:`precision` gives the covariance. A
        parameter whose pseudo-likelihood curvature does not exceed R G~ (for
        example a field, or a coupling of neurons that hardly fire in bin t) keeps
        a_S = 1. None (no calibration) unless ``calibrate``, ``covariance="fisher"``
        and diagonal covariances.
        """
        if not (self.calibrate and self.diagonal and self.covariance == "fisher"):
            return None
        _, _, hd = pseudo_value_grad_hess(theta, self.x[:, t], self.N, self.order, diagonal=True, weights=self._c(t))
        return self._calibration(-hd, self.precision(theta, t))

    def _calibration(self, H: torch.Tensor, G: torch.Tensor) -> torch.Tensor:
        """a_S = max(1/|S|, min(1, G_SS / H_SS)) from the PL curvature H and the precision G (..., D)."""
        a = torch.where(H > G, G / torch.where(H > G, H, torch.ones_like(H)), torch.ones_like(H))
        # theta_S enters |S| conditionals, so the pseudo-likelihood holds at most about |S| times the
        # information: a_S >= 1/|S| bounds the adjustment where the approximate G~ is poor
        # (e.g. a mean-field eta that has not converged under strong coupling).
        return torch.maximum(a, self._min_scale.to(a))

    def marginal_log_lik(self, theta: torch.Tensor) -> torch.Tensor:
        """R_t [y_t . theta_t - psi~(theta_t)] for all bins, theta (B, T, D) -> (B, T), for the mll."""
        psi = self.moments(theta).psi
        return self.R_t * ((self.y * theta).sum(-1) - psi)

    def expectation(self, theta: torch.Tensor) -> torch.Tensor:
        """Approximate eta~(theta) for theta (..., D)."""
        return self.moments(theta, with_psi=False).eta


def build_pseudo_observation(
    y: torch.Tensor,
    R: int,
    N: int,
    order: int,
    spikes: torch.Tensor,
    *,
    eta_method: str | None = "tap",
    eta_options: dict[str, Any] | None = None,
    diagonal: bool = True,
    covariance: str = "fisher",
    calibrate: bool = True,
    mask: torch.Tensor | None = None,
) -> PseudoLikelihood:
    """Builder for ``torch_ising.statespace.observation.OBSERVATION_MODELS["pseudo"]``.

    Args:
        y: sufficient statistics (B, T, D).
        R: trials per bin.
        N: number of neurons.
        order: interaction order.
        spikes: binary spikes (B, T, R, N) (after re-binning).
        eta_method: approximation of eta and psi (default "tap").
        eta_options: its keyword options.
        diagonal: diagonal covariances (default) or full ones.
        covariance: "fisher" or "pseudo" (see :class:`PseudoLikelihood`).
        calibrate: calibrate the mode search to the Fisher covariance (see
            :class:`PseudoLikelihood`).
        mask: boolean (B, T, R) of the observed trials (see :class:`PseudoLikelihood`).
    """
    if spikes.shape[-1] != N:
        raise ValueError(f"spikes must have shape (B, T, R, N) with N={N}; got {tuple(spikes.shape)}")
    return PseudoLikelihood(
        spikes,
        order,
        eta_method=eta_method or "tap",
        eta_options=eta_options,
        diagonal=diagonal,
        covariance=covariance,
        y=y,
        R=R,
        dtype=y.dtype,
        calibrate=calibrate,
        mask=mask,
    )
