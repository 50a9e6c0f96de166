"""The Bethe approximation, solved by loopy belief propagation, by CCCP, or by both.

Supported orders: 1 (exact: the independent model) and 2 (pairwise, the
fully connected graph of all pairs). Higher orders raise ValueError (use
``eta_method="mc"``).

For 0/1 neurons with E(x) = h . x + sum_{i<j} J_ij x_i x_j, the Bethe free
energy of single beliefs m_i = b_i(1) and pair beliefs xi_ij = b_ij(1, 1)
(with the pair table p00 = 1 - m_i - m_j + xi, p10 = m_i - xi, p01 = m_j - xi,
p11 = xi) is

    F(m, xi) = -h . m - sum_{i<j} J_ij xi_ij - sum_{i<j} H(p_ij) + (N - 2) sum_i H(m_i),

and psi_Bethe = -min F. Every node has degree N - 1 (an edge with J_ij = 0 is
harmless: its pair belief factorises). eta = (m, xi); the Fisher diagonal is
eta_S (1 - eta_S). The approximation is exact on trees (e.g. N = 2).

* :func:`bethe_bp`: loopy belief propagation. Messages are log-odds
  u_{i->j} = log m_{i->j}(1) / m_{i->j}(0):

      c_{i\\j} = h_i + sum_{k != j} u_{k->i},
      u_{i->j} = softplus(c_{i\\j} + J_ij) - softplus(c_{i\\j}),

  updated in parallel with damping; beliefs m_i = sigmoid(h_i + sum_k u_{k->i})
  and b_ij(x_i, x_j) proportional to exp(c_{i\\j} x_i + c_{j\\i} x_j + J_ij x_i x_j).
  Fast, but it may oscillate at strong coupling.
* :func:`bethe_cccp`: a convergent double loop (CCCP, Yuille 2002) on F as a
  function of m alone. For fixed m the optimal pair belief has the closed form
  (Welling & Teh 2001)

      xi = 2 (1 + a) m_i m_j / (Q + sqrt(Q^2 - 4 a (1 + a) m_i m_j)),  a = e^J - 1,  Q = 1 + a (m_i + m_j),

  and F(m) = -h . m + sum_{i<j} phi_ij(m_i, m_j) + (N - 2) sum_i H(m_i) with
  phi_ij = min_xi [-J xi - H(p_ij)] convex. Each outer step majorises F by
  adding the convex term kappa sum_i [ -H(m_i) + H(m_i^t) + logit(m_i^t)(m_i - m_i^t) ]
  (kappa H is the concave part moved out and linearised at m^t) and minimises
  the surrogate by damped Newton with an Armijo line search (the inner loop).
  F never increases. kappa starts at ``kappa`` and is doubled for a parameter
  vector whose surrogate Hessian is not positive definite at m^t, up to
  kappa = N - 1, where the surrogate is convex everywhere (Yuille's split).
* :func:`bethe_hybrid`: BP first; the parameter vectors on which BP did not
  converge are solved again by CCCP.
"""

from __future__ import annotations

import torch
from torch.nn.functional import softplus

from ._common import (
    ApproxMoments,
    binary_entropy,
    check_finite,
    check_inputs,
    check_options,
    fisher_diag_from_eta,
    independent_moments,
    pack_pairwise,
    report_convergence,
    split_pairwise,
)

__all__ = ["bethe_bp", "bethe_cccp", "bethe_hybrid", "bethe_free_energy", "pair_belief"]

_ADVICE = "try eta_method='bethe_cccp' (convergent) or 'mc', or raise max_iter"


def _offdiag(N: int, like: torch.Tensor) -> torch.Tensor:
    return ~torch.eye(N, dtype=torch.bool, device=like.device)


def pair_belief(mi: torch.Tensor, mj: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """The Bethe-optimal xi = b_ij(1, 1) for fixed single beliefs (Welling & Teh 2001).

    xi solves xi (1 - m_i - m_j + xi) = e^J (m_i - xi)(m_j - xi) in the feasible range:
    with a = e^J - 1 and Q = 1 + a (m_i + m_j),

        xi = 2 (1 + a) m_i m_j / (Q + sqrt(Q^2 - 4 a (1 + a) m_i m_j))   (Q >= 0),
        xi = (Q - sqrt(Q^2 - 4 a (1 + a) m_i m_j)) / (2 a)               (Q < 0, then a < 0),

    two forms of the same root that avoid cancellation. a = 0 gives xi = m_i m_j.
    """
    a = torch.expm1(J)
    ea = torch.exp(J)
    mm = mi * mj
    Q = 1.0 + a * (mi + mj)
    disc = (Q * Q - 4.0 * a * ea * mm).clamp_min(0.0)
    s = disc.sqrt()
    pos = Q >= 0
    safe_a = torch.where(pos, torch.ones_like(a), a)
    xi = torch.where(pos, 2.0 * ea * mm / (Q + s).clamp_min(torch.finfo(Q.dtype).tiny), (Q - s) / (2.0 * safe_a))
    lo = (mi + mj - 1.0).clamp_min(0.0)
    hi = torch.minimum(mi, mj)
    return torch.minimum(torch.maximum(xi, lo), hi)


def _table(mi: torch.Tensor, mj: torch.Tensor, xi: torch.Tensor) -> tuple[torch.Tensor, ...]:
    tiny = torch.finfo(xi.dtype).tiny
    p00 = (1.0 - mi - mj + xi).clamp_min(tiny)
    p10 = (mi - xi).clamp_min(tiny)
    p01 = (mj - xi).clamp_min(tiny)
    p11 = xi.clamp_min(tiny)
    return p00, p10, p01, p11


def bethe_free_energy(m: torch.Tensor, xi: torch.Tensor, h: torch.Tensor, J: torch.Tensor) -> torch.Tensor:
    """F(m, xi) = -h . m - sum_{i<j} [J_ij xi_ij + H(p_ij)] + (N - 2) sum_i H(m_i), shape (B,).

    Args:
        m: single beliefs (B, N).
        xi: pair beliefs b_ij(1, 1), symmetric (B, N, N) (the diagonal is ignored).
        h: fields (B, N).
        J: couplings (B, N, N).
    """
    N = m.shape[-1]
    mi, mj = m[:, :, None], m[:, None, :]
    p = _table(mi, mj, xi)
    neg_ent = sum(torch.special.xlogy(q, q) for q in p)
    pair = torch.where(_offdiag(N, m), -J * xi + neg_ent, torch.zeros_like(xi))
    return -(h * m).sum(-1) + 0.5 * pair.sum((-1, -2)) + (N - 2) * binary_entropy(m).sum(-1)


def _result(m: torch.Tensor, xi: torch.Tensor, h: torch.Tensor, J: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    psi = -bethe_free_energy(m, xi, h, J)
    eta = pack_pairwise(m, xi).clamp(0.0, 1.0)
    return psi, eta


# --------------------------------------------------------------------------- belief propagation


def _bp(h: torch.Tensor, J: torch.Tensor, tol: float, max_iter: int, damping: float):
    """Damped parallel loopy BP; returns (m, xi, converged, residual, iterations)."""
    U = torch.zeros_like(J)  # U[b, k, i] = u_{k->i}
    lam = torch.full(h.shape[:-1], float(damping), dtype=h.dtype, device=h.device)
    prev = torch.full_like(lam, float("inf"))
    res = prev
    it = 0
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        total = h + U.sum(-2)
        C = total[:, :, None] - U.transpose(-1, -2)  # C[i, j] = c_{i\j}
        U_new = softplus(C + J) - softplus(C)
        res = (U_new - U).abs().amax((-1, -2))
        if bool((res < tol).all()):
            U = U_new
            break
        lam = torch.where(res > prev, (0.5 * (1.0 + lam)).clamp(max=0.99), lam)
        prev = res
        U = lam[:, None, None] * U + (1.0 - lam[:, None, None]) * U_new
    total = h + U.sum(-2)
    C = total[:, :, None] - U.transpose(-1, -2)
    m = torch.sigmoid(total)
    # b_ij(x_i, x_j) ~ exp(c_{i\j} x_i + c_{j\i} x_j + J_ij x_i x_j); xi = b_ij(1, 1)
    w = torch.stack([torch.zeros_like(C), C, C.transpose(-1, -2), C + C.transpose(-1, -2) + J], dim=-1)
    xi = torch.softmax(w, dim=-1)[..., 3]
    return m, xi, res < tol, res, it


def bethe_bp(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    tol: float = 1e-10,
    max_iter: int = 2000,
    damping: float = 0.5,
    on_fail: str = "warn",
) -> ApproxMoments:
    """Bethe approximation by loopy belief propagation (parallel, damped).

    Supported orders: 1 (exact) and 2 (pairwise); order >= 3 raises ValueError.

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order (1 or 2).
        tol: tolerance on the largest message change (log-odds units).
        max_iter: most BP sweeps.
        damping: initial damping in [0, 1), raised where the residual grows.
        on_fail: "warn" (:class:`ApproximationWarning`; the beliefs of the last
            sweep are returned, ``converged`` False), "raise"
            (:class:`ConvergenceError`) or "ignore". :func:`bethe_hybrid`
            falls back to CCCP instead.

    Returns:
        :class:`ApproxMoments` with psi = -F_Bethe(beliefs), eta = (m, xi).
    """
    theta, N, order = check_inputs(theta, N, order, 2, "Bethe (BP)")
    check_options(tol, max_iter, damping, on_fail)
    if order == 1:
        return independent_moments(theta, N)
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, theta.shape[-1])
    h, J = split_pairwise(flat, N)
    m, xi, conv, res, it = _bp(h, J, tol, max_iter, damping)
    psi, eta = _result(m, xi, h, J)
    check_finite(psi, eta, method="Bethe (BP)")
    report_convergence(conv, res, "Bethe BP", tol, it, on_fail, _ADVICE)
    return ApproxMoments(
        psi.reshape(batch), eta.reshape(*batch, -1), fisher_diag_from_eta(eta).reshape(*batch, -1), conv.reshape(batch)
    )


# --------------------------------------------------------------------------- CCCP


def _logit(m: torch.Tensor) -> torch.Tensor:
    return torch.log(m) - torch.log1p(-m)


def _F_grad_hess(m: torch.Tensor, h: torch.Tensor, J: torch.Tensor, need_hess: bool = True):
    """F(m) = min_xi F(m, xi), its gradient and Hessian (B, N, N); also the optimal xi.

    With p the pair table at the optimal xi and a_s = 1 / p_s:

        dF/dm_i = -h_i + sum_{j != i} log(p10_ij / p00_ij) + (N - 2) log((1 - m_i) / m_i),
        d2F/dm_i dm_j = a00 - (a00 + a10)(a00 + a01) / (a00 + a10 + a01 + a11),
        d2F/dm_i^2 = sum_{j != i} [a00 + a10 - (a00 + a10)^2 / (a00 + a10 + a01 + a11)] - (N - 2) / (m_i (1 - m_i)).
    """
    N = m.shape[-1]
    off = _offdiag(N, m)
    mi, mj = m[:, :, None], m[:, None, :]
    xi = pair_belief(mi, mj, J)
    p00, p10, p01, p11 = _table(mi, mj, xi)
    neg_ent = (
        torch.special.xlogy(p00, p00)
        + torch.special.xlogy(p10, p10)
        + torch.special.xlogy(p01, p01)
        + torch.special.xlogy(p11, p11)
    )
    zero = torch.zeros_like(xi)
    pair = torch.where(off, -J * xi + neg_ent, zero)
    F = -(h * m).sum(-1) + 0.5 * pair.sum((-1, -2)) + (N - 2) * binary_entropy(m).sum(-1)
    grad = -h + torch.where(off, torch.log(p10) - torch.log(p00), zero).sum(-1) - (N - 2) * _logit(m)
    if not need_hess:
        return F, grad, None, xi
    a00, a10, a01, a11 = 1.0 / p00, 1.0 / p10, 1.0 / p01, 1.0 / p11
    axx = a00 + a10 + a01 + a11
    H = torch.where(off, a00 - (a00 + a10) * (a00 + a01) / axx, zero)
    diag = torch.where(off, a00 + a10 - (a00 + a10) ** 2 / axx, zero).sum(-1) - (N - 2) / (m * (1.0 - m))
    H = H + torch.diag_embed(diag)
    return F, grad, H, xi


def _surrogate(m, h, J, kappa, m_ref, need_hess=True):
    """S(m) = F(m) + kappa sum_i [-H(m_i) + H(m_ref_i) + logit(m_ref_i)(m_i - m_ref_i)] >= F(m)."""
    F, g, H, xi = _F_grad_hess(m, h, J, need_hess)
    k = kappa[:, None]
    bregman = -binary_entropy(m) + binary_entropy(m_ref) - _logit(m_ref) * (m - m_ref)
    S = F + (k * bregman).sum(-1)
    g = g + k * (_logit(m) - _logit(m_ref))
    if need_hess:
        H = H + torch.diag_embed(k / (m * (1.0 - m)))
    return S, g, H, F, xi


def _cccp(
    h: torch.Tensor,
    J: torch.Tensor,
    tol: float,
    max_iter: int,
    inner_max_iter: int,
    kappa0: float,
    m0: torch.Tensor | None,
):
    """CCCP double loop; returns (m, xi, converged, residual (Newton step size), outer iterations)."""
    N = h.shape[-1]
    B = h.shape[0]
    eps = 1e-12
    m = (torch.sigmoid(h) if m0 is None else m0.clone()).clamp(eps, 1.0 - eps)
    kappa = torch.full((B,), float(kappa0), dtype=h.dtype, device=h.device)
    kappa_max = float(max(N - 1, 1))
    it = 0
    gF = torch.full((B,), float("inf"), dtype=h.dtype, device=h.device)
    done = torch.zeros(B, dtype=torch.bool, device=h.device)
    for it in range(1, max_iter + 1):  # noqa: B007 - the count is returned
        m_ref = m.clone()
        # raise kappa until the surrogate's Hessian is positive definite at m_ref (kappa = N - 1 always is)
        for _ in range(64):
            _, g, H, F, _ = _surrogate(m, h, J, kappa, m_ref)
            ok = torch.linalg.cholesky_ex(H).info == 0
            if bool(ok.all()) or kappa_max <= 0:
                break
            kappa = torch.where(ok, kappa, (2.0 * kappa).clamp(max=kappa_max))
            if bool((kappa[~ok] >= kappa_max).all()):
                break
        # at m = m_ref the surrogate's gradient is grad F; the residual is the Newton step
        # (hess S)^{-1} grad F in belief units (grad F itself has a round-off floor where
        # pair-table entries m_i - xi are tiny)
        L0, info0 = torch.linalg.cholesky_ex(H)
        L0 = torch.where((info0 == 0)[:, None, None], L0, torch.eye(N, dtype=H.dtype, device=H.device))
        step0 = torch.cholesky_solve(g.unsqueeze(-1), L0).squeeze(-1).abs().amax(-1)
        gF = torch.where(info0 == 0, step0, torch.full_like(step0, float("inf")))
        done = gF < tol
        if bool(done.all()):
            break
        inner_tol = torch.clamp(0.1 * g.abs().amax(-1), min=1e-14)
        S = F
        for _ in range(inner_max_iter):
            S, g, H, _, _ = _surrogate(m, h, J, kappa, m_ref)
            active = (g.abs().amax(-1) > inner_tol) & ~done
            if not bool(active.any()):
                break
            L, info = torch.linalg.cholesky_ex(H)
            good = info == 0
            eye = torch.eye(N, dtype=H.dtype, device=H.device).expand_as(H)
            L = torch.where(good[:, None, None], L, eye)
            d = -torch.cholesky_solve(g.unsqueeze(-1), L).squeeze(-1)
            dg = torch.diagonal(H, dim1=-2, dim2=-1).abs().clamp_min(1.0)
            d = torch.where(good[:, None], d, -g / dg)
            d = torch.where(active[:, None], d, torch.zeros_like(d))
            # largest step that keeps m in (0, 1), with a margin
            lim_hi = torch.where(d > 0, (1.0 - m) / d.clamp_min(1e-300), torch.full_like(d, float("inf")))
            lim_lo = torch.where(d < 0, m / (-d).clamp_min(1e-300), torch.full_like(d, float("inf")))
            step = (0.95 * torch.minimum(lim_hi, lim_lo).amin(-1)).clamp(max=1.0)
            slope = (g * d).sum(-1)
            accepted = ~active
            m_new = m
            for _ in range(60):
                cand = (m + step[:, None] * d).clamp(eps, 1.0 - eps)
                Sc, gc = _surrogate(cand, h, J, kappa, m_ref, need_hess=False)[:2]
                armijo = Sc <= S + 1e-4 * step * slope
                # below round-off in S the value test is blind: accept a step that shrinks the gradient
                blind = (-slope < 1e-10 * S.abs().clamp_min(1.0)) & (gc.abs().amax(-1) < g.abs().amax(-1))
                okc = (~accepted) & torch.isfinite(Sc) & (armijo | blind)
                m_new = torch.where(okc[:, None], cand, m_new)
                accepted = accepted | okc
                if bool(accepted.all()):
                    break
                step = torch.where(accepted, step, 0.5 * step)
            m = m_new
    _, _, _, xi = _F_grad_hess(m, h, J, need_hess=False)
    return m, xi, done, gF, it


def bethe_cccp(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    tol: float = 1e-10,
    max_iter: int = 1000,
    inner_max_iter: int = 30,
    kappa: float = 0.5,
    on_fail: str = "warn",
    m0: torch.Tensor | None = None,
) -> ApproxMoments:
    """Bethe approximation by CCCP, a convergent double loop (F never increases).

    Supported orders: 1 (exact) and 2 (pairwise); order >= 3 raises ValueError.

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order (1 or 2).
        tol: stop when the Newton step max_i |((hess S)^{-1} grad F)_i| at the
            current beliefs is below ``tol`` (a stationary point of the Bethe
            free energy, i.e. a BP fixed point, to ``tol`` in the beliefs).
        max_iter: most outer (CCCP) iterations.
        inner_max_iter: most Newton steps per inner problem.
        kappa: initial weight of the linearised concave part (> 0); raised
            automatically where needed (see the module docstring).
        on_fail: "warn", "raise" or "ignore" (as in :func:`bethe_bp`).
        m0: optional starting single beliefs (..., N), e.g. from BP.

    Returns:
        :class:`ApproxMoments` with psi = -F_Bethe at the minimum found.
    """
    theta, N, order = check_inputs(theta, N, order, 2, "Bethe (CCCP)")
    check_options(tol, max_iter, 0.0, on_fail)
    if not (isinstance(kappa, (int, float)) and kappa > 0):
        raise ValueError(f"kappa must be a positive number, got {kappa!r}")
    if isinstance(inner_max_iter, bool) or not isinstance(inner_max_iter, int) or inner_max_iter < 1:
        raise ValueError(f"inner_max_iter must be an integer >= 1, got {inner_max_iter!r}")
    if order == 1:
        return independent_moments(theta, N)
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, theta.shape[-1])
    h, J = split_pairwise(flat, N)
    m_start = None if m0 is None else m0.reshape(-1, N).to(flat)
    m, xi, conv, res, it = _cccp(h, J, tol, max_iter, inner_max_iter, kappa, m_start)
    psi, eta = _result(m, xi, h, J)
    check_finite(psi, eta, method="Bethe (CCCP)")
    report_convergence(conv, res, "Bethe CCCP", tol, it, on_fail, "raise max_iter, or try eta_method='mc'")
    return ApproxMoments(
        psi.reshape(batch), eta.reshape(*batch, -1), fisher_diag_from_eta(eta).reshape(*batch, -1), conv.reshape(batch)
    )


def bethe_hybrid(
    theta: torch.Tensor,
    N: int,
    order: int = 2,
    *,
    tol: float = 1e-10,
    max_iter: int = 500,
    damping: float = 0.5,
    cccp_tol: float = 1e-10,
    cccp_max_iter: int = 1000,
    on_fail: str = "warn",
) -> ApproxMoments:
    """Bethe approximation: BP first, CCCP for the parameter vectors where BP failed.

    Supported orders: 1 (exact) and 2 (pairwise).

    Args:
        theta: natural parameters, shape (..., D).
        N: number of neurons.
        order: interaction order (1 or 2).
        tol, max_iter, damping: BP controls (see :func:`bethe_bp`).
        cccp_tol, cccp_max_iter: CCCP controls (see :func:`bethe_cccp`).
        on_fail: what to do when CCCP, too, does not converge.

    Returns:
        :class:`ApproxMoments`; ``converged`` is True where BP or CCCP converged.
    """
    theta, N, order = check_inputs(theta, N, order, 2, "Bethe (hybrid)")
    check_options(tol, max_iter, damping, on_fail)
    if order == 1:
        return independent_moments(theta, N)
    batch = theta.shape[:-1]
    flat = theta.reshape(-1, theta.shape[-1])
    h, J = split_pairwise(flat, N)
    m, xi, conv, res, it = _bp(h, J, tol, max_iter, damping)
    if not bool(conv.all()):
        bad = (~conv).nonzero().squeeze(-1)
        mc, xic, convc, resc, itc = _cccp(h[bad], J[bad], cccp_tol, cccp_max_iter, 30, 1.0, None)
        m = m.index_copy(0, bad, mc)
        xi = xi.index_copy(0, bad, xic)
        res = res.index_copy(0, bad, resc)
        conv = conv.index_copy(0, bad, convc)
        it = max(it, itc)
    psi, eta = _result(m, xi, h, J)
    check_finite(psi, eta, method="Bethe (hybrid)")
    report_convergence(conv, res, "Bethe hybrid (BP, then CCCP)", cccp_tol, it, on_fail, "raise cccp_max_iter")
    return ApproxMoments(
        psi.reshape(batch), eta.reshape(*batch, -1), fisher_diag_from_eta(eta).reshape(*batch, -1), conv.reshape(batch)
    )
