import numpy as np
import pytest

from helpers.gradcheck import eval_numerical_gradient_array, rel_error


def test_numerical_gradient_matches_a_known_derivative():
    rng = np.random.default_rng(0)
    x = rng.normal(size=(3, 4))
    df = rng.normal(size=(3, 4))
    num = eval_numerical_gradient_array(lambda z: np.sin(z) * z, x.copy(), df)
    assert rel_error(num, df * (np.cos(x) * x + np.sin(x))) < 1e-8


def test_numerical_gradient_restores_its_input_and_sees_a_wrong_gradient():
    x = np.linspace(-1, 1, 6).reshape(2, 3)
    before = x.copy()
    num = eval_numerical_gradient_array(lambda z: z**3, x, np.ones_like(x))
    assert np.array_equal(x, before)
    assert rel_error(num, 3 * x**2) < 1e-8
    assert rel_error(num, 2 * x**2) > 0.1  # a wrong analytic gradient is caught


def test_rel_error():
    assert rel_error(np.ones(3), np.ones(3)) == 0.0
    assert rel_error([1.0, 2.0], [1.0, 2.2]) == pytest.approx(0.2 / 4.2)
    with pytest.raises(ValueError, match="shapes differ"):
        rel_error(np.ones(2), np.ones(3))
