"""The numpy twins of hepjax.physics.kinematics: the same values as the JAX functions (float64),
zeros where undefined, one delta_phi for both, and no JAX import."""
import subprocess
import sys

import jax
import numpy as np

from hepjax.physics import kinematics as K
from hepjax.physics import numpy_kinematics as N


def _vectors(rng, n=(4, 7)):
    pt = rng.uniform(1, 200, n)
    eta, phi = rng.normal(0, 1.5, n), rng.uniform(-np.pi, np.pi, n)
    p3 = np.stack([pt * np.cos(phi), pt * np.sin(phi), pt * np.sinh(eta)], -1)
    p = np.concatenate([np.sqrt((p3**2).sum(-1) + rng.uniform(0, 5, n) ** 2)[..., None], p3], -1)
    p[0, -2:] = 0.0                       # padding
    p[1, -1] = [10.0, 0.0, 0.0, 10.0]     # massless along the beam: pT = 0, E = pz
    return p


def test_same_values_as_the_jax_functions_in_float64():
    p = _vectors(np.random.default_rng(0))
    mask = p[..., 0] > 0
    with jax.enable_x64(True):
        for name in ("pt", "eta", "phi", "rapidity", "mass2", "mass"):
            np.testing.assert_allclose(getattr(N, name)(p), getattr(K, name)(p), rtol=1e-12,
                                       atol=1e-9, err_msg=name)
        np.testing.assert_allclose(N.jet_momentum(p, mask), K.jet_momentum(p, mask), rtol=1e-14)
        a, b = N.eta(p), N.phi(p)
        np.testing.assert_allclose(N.delta_r(a[:, :1], b[:, :1], a, b),
                                   K.delta_r(a[:, :1], b[:, :1], a, b), rtol=1e-12, atol=1e-12)
    # undefined quantities are 0: padding, and eta / phi / rapidity on the beam axis
    for f in (N.pt, N.eta, N.phi, N.rapidity, N.mass):
        assert np.all(f(p)[0, -2:] == 0)
    assert N.eta(p)[1, -1] == 0 and N.phi(p)[1, -1] == 0 and N.rapidity(p)[1, -1] == 0
    # a precomputed pT gives the same values
    pt = N.pt(p)
    np.testing.assert_array_equal(N.eta(p, pt), N.eta(p))
    np.testing.assert_array_equal(N.phi(p, pt), N.phi(p))


def test_delta_phi_is_one_definition_for_numpy_and_jax():
    assert K.delta_phi is N.delta_phi
    a, b = np.array([3.0, -3.0, 0.5]), np.array([-3.0, 3.0, 0.25])
    np.testing.assert_allclose(N.delta_phi(a, b), [6.0 - 2 * np.pi, 2 * np.pi - 6.0, 0.25])
    np.testing.assert_allclose(np.asarray(jax.jit(N.delta_phi)(a, b)), N.delta_phi(a, b),
                               atol=1e-6)


def test_the_numpy_twin_and_the_data_code_import_no_jax():
    code = ("import sys, hepjax.physics.numpy_kinematics, hepjax.data.features, "
            "hepjax.data.images, hepjax.data.generation, hepjax.data.dijet; "
            "assert 'jax' not in sys.modules, 'jax was imported'")
    proc = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
