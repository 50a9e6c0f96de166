"""A compatibility facade with the published SSLL library's modules, names and defaults.

Existing SSLL code moves over by changing one import line::

    from torch_ising.compat import ssll, synthesis, transforms, energies

* :mod:`.ssll`: ``run(spikes, order, ...)`` -> an ``EMData`` container
  (theta_s, eta_s, sigma_s, mll, mll_list, N, D, T, y, R, Q, F, U, iterations).
* :mod:`.synthesis`: ``generate_thetas(N, O, T, mu1=...)``, ``generate_spikes(p, R)``.
* :mod:`.transforms`: ``initialise(N, O)``, ``compute_D``, ``compute_p``,
  ``compute_eta``, ``compute_psi``, ``compute_y``, ``enumerate_patterns``.
* :mod:`.energies`: ``get_energies(emd)`` attaches S1, S2, S_ratio, dkl, llk1,
  llk2, U1, U2 and psi.

Everything takes and returns numpy arrays. The facade only translates
arguments and results; the computation is torch_ising's own (exact O(N 2^N)
moments, Newton MAP, batched thermodynamics). See :mod:`.ssll` for how the
published keyword arguments are mapped.
"""

from . import energies, ssll, synthesis, transforms

__all__ = ["ssll", "synthesis", "transforms", "energies"]
