"""Epsilon from Google's dp-accounting (PyPI `dp-accounting`), the independent reference for
the privacy accountant's tests. Prints one line per grid point:
q sigma steps delta epsilon
"""
import itertools

import dp_accounting
from dp_accounting.rdp import rdp_privacy_accountant

for q, sigma, steps, delta in itertools.product(
    [0.001, 0.01, 0.1, 1.0], [0.7, 1.0, 2.0, 5.0], [1, 100, 1000], [1e-5, 1e-6]
):
    accountant = rdp_privacy_accountant.RdpAccountant()
    event = dp_accounting.SelfComposedDpEvent(
        dp_accounting.PoissonSampledDpEvent(q, dp_accounting.GaussianDpEvent(sigma)), steps
    )
    accountant.compose(event)
    print(q, sigma, steps, delta, accountant.get_epsilon(delta))
