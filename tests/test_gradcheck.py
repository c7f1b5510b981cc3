"""Every layer's analytic gradient equals the numerical one in float64, on every CPU backend."""
import numpy as np
import pytest

import tinynet as tn
from tinynet import backends, gradcheck
from tinynet.backends import reference


@pytest.mark.parametrize("backend", backends.available("cpu"))
@pytest.mark.parametrize("layer", sorted(gradcheck.CASES))
def test_analytic_gradient_matches_finite_differences(layer, backend):
    err, checked = gradcheck.run_case(layer, backend, "float64")
    assert checked > 0
    assert err <= 1e-6, f"{layer} on {backend}: max relative error {err:.2e}"


def test_gradcheck_catches_lrn_backward_with_the_wrong_window(monkeypatch):
    """A mutation test: LRN's backward summing the forward window instead of the mirrored one
    differs only for even sizes, so check with size 4 and a large alpha; the check must fail."""
    def wrong(dy, x, y, scale, size, alpha, beta):
        back = reference._window_sum(dy * y / scale, size // 2, (size - 1) // 2)  # not mirrored
        return dy * scale ** -beta - 2.0 * alpha * beta * x * back

    rng = np.random.default_rng(0)
    x = tn.tensor(rng.standard_normal((2, 6, 2, 2)), dtype=np.float64, requires_grad=True)
    fn = lambda x: tn.functional.local_response_norm(x, size=4, alpha=0.5)
    with backends.use_cpu_backend("reference"):
        good, _ = gradcheck.check_gradients(fn, [x])
        monkeypatch.setattr(reference, "lrn_backward", wrong)
        bad, _ = gradcheck.check_gradients(fn, [x])
    assert good < 1e-8
    assert bad > 1e-2


def test_gradcheck_catches_a_conv_backward_that_drops_a_tap(monkeypatch):
    real = reference.col2im

    def dropped(cols, *args):
        cols = cols.copy()
        cols[0] = 0  # forget the gradient of kernel tap (c=0, i=0, j=0)
        return real(cols, *args)

    with backends.use_cpu_backend("reference"):
        monkeypatch.setattr(reference, "col2im", dropped)
        err, _ = gradcheck.run_case("conv2d", "reference")
    assert err > 1e-2


def test_cli_prints_a_table_and_exits_zero(capsys):
    code = gradcheck.main(["--backend", "reference", "--layer", "relu", "--layer", "linear"])
    out = capsys.readouterr().out
    assert code == 0
    assert "relu" in out and "linear" in out and "2 passed, 0 failed" in out


def test_cli_columns_are_as_wide_as_their_longest_entry(capsys, monkeypatch):
    """Before, a 24-character name column printed 'local_response_norm_even_sizenumba'."""
    longest = max(gradcheck.CASES, key=len)
    monkeypatch.setattr(gradcheck, "run_case", lambda layer, backend, dtype: (0.0, 1))
    gradcheck.main(["--backend", "reference", "--layer", longest, "--layer", "relu"])
    lines = capsys.readouterr().out.splitlines()
    header, rows = lines[0], lines[1:3]
    assert [row.split()[:2] for row in rows] == [[longest, "reference"], ["relu", "reference"]]
    assert all(row.index("reference") == header.index("backend") for row in rows)


def test_cli_exits_nonzero_when_a_layer_fails(monkeypatch, capsys):
    monkeypatch.setattr(reference, "relu_backward", lambda dy, y: dy)  # forgets the mask
    code = gradcheck.main(["--backend", "reference", "--layer", "relu"])
    assert code == 1
    assert "FAIL" in capsys.readouterr().out


def test_network_check_steps_past_a_relu_that_flips_near_zero():
    """L(s) = 3 s + 5 relu(s - 1.5e-6): its slope at 0 is 3, but the difference at h = 1e-6 reaches
    across the bend at 1.5e-6 and is wrong; the shrunken step finds 3 again. A smooth L keeps the
    first step's value, so the kink rule cannot change a check that had no kink."""
    bent = lambda s: 3.0 * s + 5.0 * max(s - 1.5e-6, 0.0)
    plain = (8 * (bent(1e-6) - bent(-1e-6)) - (bent(2e-6) - bent(-2e-6))) / 12e-6
    assert abs(plain - 3.0) > 0.1                                    # the bend spoils the plain difference
    assert abs(gradcheck._kink_free_difference(bent, 1e-6, 1e-6) - 3.0) < 1e-6
    smooth = lambda s: np.sin(1.0 + s)
    first = (8 * (smooth(1e-3) - smooth(-1e-3)) - (smooth(2e-3) - smooth(-2e-3))) / 12e-3
    assert gradcheck._kink_free_difference(smooth, 1e-3, 1e-6) == first


def test_network_check_still_fails_a_wrong_gradient_and_forgets_earlier_checks():
    """A linear layer whose backward doubles dW: every step agrees on the true slope, which
    disagrees with the analytic one, so check_direction reports a large error. A second check
    of the same tensors starts from fresh gradients."""
    class WrongLinear(tn.functional.Linear):
        @staticmethod
        def backward(ctx, dy):
            dx, dw, db = tn.functional.Linear.backward(ctx, dy)
            return dx, 2 * dw, db

    rng = np.random.default_rng(0)
    x = tn.tensor(rng.standard_normal((3, 4)), dtype=np.float64, requires_grad=True)
    w = tn.tensor(rng.standard_normal((2, 4)), dtype=np.float64, requires_grad=True)
    good, _ = gradcheck.check_direction(lambda x, w: tn.functional.relu(tn.functional.linear(x, w)), [x, w])
    bad, _ = gradcheck.check_direction(lambda x, w: tn.functional.relu(WrongLinear.apply(x, w, None)), [x, w])
    again, _ = gradcheck.check_direction(lambda x, w: tn.functional.relu(tn.functional.linear(x, w)), [x, w])
    assert good < 1e-8 and bad > 1e-2
    assert again < 1e-8  # the gradients of the checks before are not added to this one


def test_cli_asked_for_a_backend_that_cannot_run_here_says_so_in_one_line_and_exits_2(capsys):
    if "cupy" in backends.available("cuda"):
        pytest.skip("CuPy and a GPU are present")
    # before: the ImportError's traceback
    with pytest.raises(SystemExit) as exit_info:
        gradcheck.main(["--backend", "cupy", "--layer", "relu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradcheck: --backend cupy cannot run here: ") and err.count("\n") == 1
