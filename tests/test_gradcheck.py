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


def test_cli_exits_nonzero_when_a_layer_fails(monkeypatch, capsys):
    monkeypatch.setattr(reference, "relu_backward", lambda dy, y: dy)  # forgets the mask
    code = gradcheck.main(["--backend", "reference", "--layer", "relu"])
    assert code == 1
    assert "FAIL" in capsys.readouterr().out


def test_cli_asked_for_a_backend_that_cannot_run_here_says_so_in_one_line_and_exits_2(capsys):
    if "cupy" in backends.available("cuda"):
        pytest.skip("CuPy and a GPU are present")
    # before: the ImportError's traceback
    with pytest.raises(SystemExit) as exit_info:
        gradcheck.main(["--backend", "cupy", "--layer", "relu"])
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert err.startswith("gradcheck: --backend cupy cannot run here: ") and err.count("\n") == 1
