"""Draw im2col on a tiny input: the image, its columns matrix, and the one GEMM that convolves.

    python examples/show_im2col.py --out im2col.png                        # 1 x 2 x 4 x 4, 3 x 3 kernel
    python examples/show_im2col.py --padding 1 --stride 2 --out im2col_pad.png
    python examples/show_im2col.py --out-channels 4 --groups 2 --out im2col_groups.png

im2col copies every k x k window of the (padded) input into one column:

    cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = xpad[n, c, y*s + i, x*s + j]

so the convolution becomes one matrix product, Y = W @ cols, with W (oc, C*kh*kw) the filters
laid flat. With groups G the rows of group g are one block (channels come first in the row
index), W is block-diagonal, and the engine runs G smaller GEMMs, one per block.

Every input pixel holds its own number (1, 2, 3, ...) and has its own colour, which it keeps in
the columns matrix: each copy of it is easy to find (a white 0 is padding). The figure is
checked against tinynet.functional.conv2d before it is drawn.
"""
import argparse
import os
import sys

import numpy as np

try:
    import matplotlib
except ImportError:
    sys.exit('show_im2col.py draws with matplotlib, which is not installed: pip install -e ".[examples]"')

import tinynet as tn  # noqa: E402
import tinynet.functional as F  # noqa: E402
from tinynet.backends import reference  # noqa: E402
from tinynet.shapes import arithmetic  # noqa: E402

FIGSIZE = (14, 12)  # inches; the PNG is FIGSIZE * dpi pixels
MAX_CELLS = 64      # rows or columns beyond this could not be labelled legibly
HIGHLIGHT = "red"


def im2col_example(batch=1, channels=2, size=4, kernel=3, stride=1, padding=0, out_channels=2, groups=1, seed=0):
    """The numbers of the figure: x (N, C, H, W) holding 1, 2, ...; cols; W with small integer
    weights, block-diagonal over the groups as (oc, C*kh*kw); Y = W @ cols. Checked against conv2d."""
    if channels % groups or out_channels % groups:
        raise ValueError(f"channels={channels} and out_channels={out_channels} must be divisible by groups={groups}")
    x = np.arange(1, batch * channels * size * size + 1, dtype=np.float64).reshape(batch, channels, size, size)
    cols = reference.im2col(x, kernel, kernel, (stride, stride), (padding, padding))  # (C*k*k, N*oh*ow)
    rng = np.random.default_rng(seed)
    w = rng.integers(-1, 2, size=(out_channels, channels // groups, kernel, kernel)).astype(np.float64)
    cg, og, rows_g = channels // groups, out_channels // groups, channels // groups * kernel * kernel
    w_flat = np.zeros((out_channels, cols.shape[0]))  # block-diagonal: group g's filters see its rows only
    for g in range(groups):
        w_flat[g * og:(g + 1) * og, g * rows_g:(g + 1) * rows_g] = w[g * og:(g + 1) * og].reshape(og, rows_g)
    y = w_flat @ cols                                            # (oc, N*oh*ow)
    oh, oh_text = arithmetic(size, kernel, stride, padding)
    conv = F.conv2d(tn.tensor(x), tn.tensor(w), stride=stride, padding=padding, groups=groups).numpy()
    as_gemm = y.reshape(out_channels, batch, oh, oh).transpose(1, 0, 2, 3)
    if not np.allclose(as_gemm, conv):
        raise AssertionError("im2col + GEMM differs from conv2d: the figure would be wrong")
    return {"x": x, "cols": cols, "w": w_flat, "y": y, "oh": oh, "oh_text": oh_text, "kernel": kernel, "stride": stride,
            "padding": padding, "groups": groups, "cg": cg, "og": og}


def _pixel_colours(count):
    """A light colour for each of `count` pixel numbers; index 0 (padding) is white."""
    from matplotlib import colormaps
    palette = [colormaps["tab20"](i % 20) for i in range(count)]
    light = [tuple(0.55 * np.array(c[:3]) + 0.45) + (1.0,) for c in palette]
    return np.array([(1.0, 1.0, 1.0, 1.0)] + light)


def _grid(ax, colours, texts, fontsize):
    """Cells coloured (rows, cols, 4) with text in each; thin lines between cells."""
    rows, columns = texts.shape
    ax.imshow(colours, interpolation="nearest", aspect="auto")
    for r in range(rows):
        for c in range(columns):
            ax.text(c, r, texts[r, c], ha="center", va="center", fontsize=fontsize)
    ax.set_xticks(np.arange(-0.5, columns), minor=True)
    ax.set_yticks(np.arange(-0.5, rows), minor=True)
    ax.grid(which="minor", color="0.6", linewidth=0.5)
    ax.tick_params(which="minor", length=0)


def _box(ax, x0, y0, width, height):
    from matplotlib.patches import Rectangle
    ax.add_patch(Rectangle((x0 - 0.5, y0 - 0.5), width, height, fill=False, edgecolor=HIGHLIGHT, linewidth=2.5))


def _number(v):
    return f"{v:g}"


def _draw_input(ax, ex, colours, font):
    """The input, padded, channel by channel (and image by image) side by side, with the window
    of output pixel (0, 0) boxed and the output-size arithmetic in the title."""
    x, k, s, p, oh = ex["x"], ex["kernel"], ex["stride"], ex["padding"], ex["oh"]
    n, c, size, _ = x.shape
    side = size + 2 * p
    xpad = np.pad(x, ((0, 0), (0, 0), (p, p), (p, p)))
    panes = [(b, ch) for b in range(n) for ch in range(c)]
    canvas = np.full((side, len(panes) * (side + 1) - 1), -1, dtype=int)
    for q, (b, ch) in enumerate(panes):
        canvas[:, q * (side + 1):q * (side + 1) + side] = xpad[b, ch]
    cell_colours = np.where(canvas[..., None] >= 0, colours[np.maximum(canvas, 0)], 1.0)
    texts = np.where(canvas >= 0, canvas.astype(str), "")
    _grid(ax, cell_colours, texts, font + 1)
    ax.set_aspect("equal")
    ax.set_xticks([q * (side + 1) + (side - 1) / 2 for q in range(len(panes))])
    ax.set_xticklabels([f"image {b}, channel {ch}" for b, ch in panes], fontsize=font + 1)
    ax.set_yticks([])
    ax.set_title(f"input x {tuple(x.shape)}" + (f", padded by {p}" if p else "")
                 + f"; kernel {k}x{k}, stride {s} -> output {oh}x{oh}\n" + ex["oh_text"], fontsize=11)
    for q in range(len(panes)):  # the window of output pixel (0, 0) of image 0
        if panes[q][0] == 0:
            _box(ax, q * (side + 1), 0, k, k)


def draw(ex, out, dpi):
    matplotlib.use("Agg")
    import matplotlib.pyplot as plt
    x, cols, w, y = ex["x"], ex["cols"], ex["w"], ex["y"]
    n = x.shape[0]
    k, oh, groups = ex["kernel"], ex["oh"], ex["groups"]
    rows_k, cols_p, oc = cols.shape[0], cols.shape[1], w.shape[0]
    colours = _pixel_colours(x.size)
    font = 9 if max(rows_k, cols_p) <= 20 else 7 if max(rows_k, cols_p) <= 36 else 5

    fig = plt.figure(figsize=FIGSIZE, dpi=dpi)
    gs = fig.add_gridspec(2, 2, width_ratios=[rows_k, max(cols_p, 0.5 * rows_k)],
                          height_ratios=[rows_k, max(oc, 2)],
                          left=0.08, right=0.98, top=0.86, bottom=0.07, wspace=0.16, hspace=0.1)
    fig.text(0.02, 0.975, "im2col: every k x k window becomes one column, and the convolution one GEMM\n"
             "cols[(c*kh + i)*kw + j, (n*oh + y)*ow + x] = xpad[n, c, y*s + i, x*s + j]        Y = W @ cols",
             fontsize=13, va="top")

    _draw_input(fig.add_subplot(gs[0, 0]), ex, colours, font)

    # -- the columns matrix
    ax = fig.add_subplot(gs[0, 1])
    index = cols.astype(int)
    _grid(ax, colours[index], np.vectorize(_number)(cols), font)
    ax.set_yticks(range(rows_k))
    ax.set_yticklabels([f"c{r // (k * k)} ({r // k % k},{r % k})" for r in range(rows_k)], fontsize=font)
    ax.set_xticks(range(cols_p))
    ax.set_xticklabels([f"n{q // (oh * oh)}\n({q // oh % oh},{q % oh})" for q in range(cols_p)], fontsize=font)
    ax.xaxis.tick_top()
    ax.set_title(f"cols ({rows_k} x {cols_p})\nrows: channel c, kernel offset (i,j)\n"
                 "columns: image n, output pixel (y,x)", fontsize=11, pad=30)
    _box(ax, 0, 0, 1, rows_k)
    for g in range(1, groups):
        ax.axhline(g * rows_k / groups - 0.5, color="black", linewidth=2)

    # -- the filters, flat (block-diagonal for groups)
    ax = fig.add_subplot(gs[1, 0])
    from matplotlib import colormaps
    weight_colours = colormaps["coolwarm"]((w + 2) / 4)
    rows_g, og = rows_k // groups, oc // groups
    outside = np.ones_like(w, dtype=bool)
    for g in range(groups):
        outside[g * og:(g + 1) * og, g * rows_g:(g + 1) * rows_g] = False
    weight_colours[outside] = (0.65, 0.65, 0.65, 1.0)  # weights a grouped conv does not have
    _grid(ax, weight_colours, np.where(outside, "", np.vectorize(_number)(w)), font)
    ax.set_yticks(range(oc))
    ax.set_yticklabels([f"o{o}" for o in range(oc)], fontsize=font)
    ax.set_xticks([])
    title = f"W ({oc} x {rows_k}): filters laid flat"
    if groups > 1:
        title += f"; groups={groups}: block-diagonal, {groups} GEMMs of ({og} x {rows_g}) @ ({rows_g} x {cols_p})"
    ax.set_xlabel(title, fontsize=11)

    # -- the product
    ax = fig.add_subplot(gs[1, 1])
    _grid(ax, np.ones(y.shape + (4,)) * np.array([0.93, 0.97, 0.9, 1.0]), np.vectorize(_number)(y), font)
    ax.set_xticks([])
    ax.set_yticks([])
    _box(ax, 0, 0, 1, oc)
    ax.set_xlabel(f"Y = W @ cols ({oc} x {cols_p})\n-> reshaped to (N, oc, oh, ow) = ({n}, {oc}, {oh}, {oh})",
                  fontsize=11)
    os.makedirs(os.path.dirname(os.path.abspath(out)), exist_ok=True)
    fig.savefig(out, dpi=dpi)
    plt.close(fig)
    return out


def main(argv=None):
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--batch", type=int, default=1)
    parser.add_argument("--channels", type=int, default=2)
    parser.add_argument("--size", type=int, default=4, help="input height = width")
    parser.add_argument("--kernel", type=int, default=3)
    parser.add_argument("--stride", type=int, default=1)
    parser.add_argument("--padding", type=int, default=0)
    parser.add_argument("--out-channels", type=int, default=2)
    parser.add_argument("--groups", type=int, default=1)
    parser.add_argument("--seed", type=int, default=0, help="for the small integer weights")
    parser.add_argument("--out", default=os.path.join("runs", "im2col.png"))
    parser.add_argument("--dpi", type=int, default=100)
    args = parser.parse_args(argv)
    try:
        ex = im2col_example(args.batch, args.channels, args.size, args.kernel, args.stride, args.padding,
                            args.out_channels, args.groups, args.seed)
    except ValueError as err:
        parser.error(str(err))
    if max(ex["cols"].shape) > MAX_CELLS:
        parser.error(f"the columns matrix would be {ex['cols'].shape[0]} x {ex['cols'].shape[1]}; keep both "
                     f"sides at most {MAX_CELLS} (fewer channels, a smaller input or kernel) so it can be labelled")
    out = draw(ex, args.out, args.dpi)
    print(f"wrote {out}")
    return out


if __name__ == "__main__":
    main()
