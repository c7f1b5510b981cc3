"""The one home of the window arithmetic (convolution and pooling output sizes).

A window of F pixels sliding by S over a line of W pixels padded by P on each side stops
(W - F + 2P) // S + 1 times (the CS231n formula; floor rounding, as PyTorch and Caffe do).
With per-side padding (P_before, P_after) the padded line is W + P_before + P_after long:

    out = (W + P_before + P_after - F) // S + 1

AlexNet's conv1 written the paper-summary way pads [1, 2]: (224 - 11 + 1 + 2) // 4 + 1 = 55 exactly.

A dilated window (dilation D: taps D pixels apart) spans D*(F - 1) + 1 pixels, its effective size.

Pooling with ceil_mode (Caffe's rounding, how its AlexNet pools) rounds the division up, so a last
window that sticks out of the padded line still counts, unless it would start in the right padding
(PyTorch's rule: it must start inside the input or the left padding):

    out = ceil((W + 2P - F) / S) + 1,   minus 1 if (out - 1) * S >= W + P
"""
import numbers


def pair(value, name, op, minimum=1):
    """A window setting (kernel_size, stride, padding) given as an int or a pair -> (height, width).

    Each entry must be an int >= minimum (1 for kernels and strides, 0 for padding); the errors
    name the op and the argument: "conv2d: stride must be positive, got 0"."""
    if isinstance(value, numbers.Integral):
        values = (value, value)
    else:
        try:
            values = () if isinstance(value, str) else tuple(value)
        except TypeError:  # a float or None: the message below, not "'float' object is not iterable"
            values = ()
    if len(values) != 2 or not all(isinstance(v, numbers.Integral) for v in values):
        raise TypeError(f"{op}: {name} must be an int or a pair of ints, got {value!r}")
    if any(v < minimum for v in values):
        what = "positive" if minimum == 1 else "non-negative"
        raise ValueError(f"{op}: {name} must be {what}, got {value!r}")
    return tuple(int(v) for v in values)


def hw(value):
    """A kernel argument given as an int or an (h, w) pair -> (h, w); unchecked (the ops check)."""
    return (int(value), int(value)) if isinstance(value, numbers.Integral) else (int(value[0]), int(value[1]))


def side_padding(padding):
    """An int P or a pair (P_before, P_after) -> (P_before, P_after)."""
    if isinstance(padding, numbers.Integral):
        return int(padding), int(padding)
    before, after = padding
    return int(before), int(after)


def padding_sides(padding, op="conv2d"):
    """A convolution's padding in its three accepted forms -> ((top, bottom), (left, right)):

        P                                 P on every side
        (ph, pw)                          PyTorch's form: ph above and below, pw left and right
        ((top, bottom), (left, right))    each side its own

    A paper summary's "padding [1, 2]" (one before, two after, on both axes) is ((1, 2), (1, 2)); a
    flat pair keeps PyTorch's meaning so that PyTorch code ports unchanged. Errors name `op`."""
    def ints(values):
        return isinstance(values, (tuple, list)) and len(values) == 2 and \
            all(isinstance(v, numbers.Integral) for v in values)

    if isinstance(padding, numbers.Integral):
        sides = ((padding, padding), (padding, padding))
    elif ints(padding):
        sides = ((padding[0], padding[0]), (padding[1], padding[1]))
    elif isinstance(padding, (tuple, list)) and len(padding) == 2 and all(ints(axis) for axis in padding):
        sides = tuple(tuple(axis) for axis in padding)
    else:
        raise TypeError(f"{op}: padding must be an int, a pair (ph, pw) or a pair of pairs "
                        f"((top, bottom), (left, right)), got {padding!r}")
    if any(v < 0 for axis in sides for v in axis):
        raise ValueError(f"{op}: padding must be non-negative, got {padding!r}")
    return tuple((int(before), int(after)) for before, after in sides)


def effective_kernel(kernel, dilation=1):
    """The pixels a window of `kernel` taps spaced `dilation` apart spans: D*(F - 1) + 1."""
    return dilation * (kernel - 1) + 1


def conv_output_size(size, kernel, stride=1, padding=0, dilation=1):
    """(W + P_before + P_after - D*(F - 1) - 1) // S + 1 for a line of `size` pixels (see the module
    docstring; D = 1 gives (W + P_before + P_after - F) // S + 1).

    padding: an int (the same on both sides) or a pair (before, after). The result is below 1 when
    the window does not fit; callers that need a layer to exist check that and say which layer."""
    before, after = side_padding(padding)
    return (size + before + after - effective_kernel(kernel, dilation)) // stride + 1


def pool_output_size(size, kernel, stride, padding=0, ceil_mode=False):
    """A pooling window's output length (PyTorch's and Caffe's rule): floor rounding as
    conv_output_size, or with ceil_mode the division rounded up, less one when that last window
    would start in the right padding ((out - 1) * S >= W + P): every window then starts inside the
    input or the left padding, so each holds at least one input pixel (given P <= F / 2)."""
    if not ceil_mode:
        return conv_output_size(size, kernel, stride, padding)
    out = -(-(size + 2 * padding - kernel) // stride) + 1
    if (out - 1) * stride >= size + padding:
        out -= 1
    return out


def pool_window_lengths(size, kernel, stride, padding, out, count_include_pad=True):
    """The length along one axis of each of `out` average-pooling windows, PyTorch's divisor:
    window o covers [o*S - P, o*S - P + F) cut to the padded line [-P, W + P) (count_include_pad:
    padding counts, a ceil_mode window's part beyond the padded line does not), or to the input
    [0, W) (count_include_pad=False). The divisor of window (oy, ox) is the product of the two
    axes' lengths."""
    lengths = []
    for o in range(out):
        start = o * stride - padding
        end = min(start + kernel, size + padding)
        if not count_include_pad:
            start, end = max(start, 0), min(end, size)
        lengths.append(end - start)
    return lengths


def arithmetic(size, kernel, stride=1, padding=0, ceil_mode=False, dilation=1):
    """The output length and the text of its arithmetic, e.g. (55, '(224 - 11 + 2*2) // 4 + 1 = 55');
    a dilated kernel is written (D*(F - 1) + 1), ceil_mode's division as ceil(a / S), e.g.
    (6, 'ceil((13 - 3) / 2) + 1 = 6'), with PyTorch's last-window rule when it drops one."""
    before, after = side_padding(padding)
    if before == after:
        pad = f" + 2*{before}" if before else ""
    else:
        pad = f" + {before} + {after}"
    span = f"{kernel}" if dilation == 1 else f"({dilation}*({kernel} - 1) + 1)"
    if not ceil_mode:
        out = conv_output_size(size, kernel, stride, padding, dilation)
        return out, f"({size} - {span}{pad}) // {stride} + 1 = {out}"
    out = pool_output_size(size, kernel, stride, before, ceil_mode=True)
    rounded = -(-(size + before + after - kernel) // stride)
    text = f"ceil(({size} - {kernel}{pad}) / {stride}) + 1 = {rounded + 1}"
    if out != rounded + 1:
        text += f", - 1 = {out} (the last window would start in the right padding)"
    return out, text


def adaptive_windows(size, out):
    """The windows of adaptive pooling from `size` pixels to `out` (PyTorch's AdaptiveAvgPool2d):

        start_i = floor(i * size / out),   end_i = ceil((i + 1) * size / out),   0 <= i < out

    Neighbouring windows overlap when `size` is not a multiple of `out`, and repeat pixels when
    out > size. Returns (starts, ends), two lists of ints; window i is [starts[i], ends[i])."""
    starts = [i * size // out for i in range(out)]
    ends = [-(-(i + 1) * size // out) for i in range(out)]
    return starts, ends
