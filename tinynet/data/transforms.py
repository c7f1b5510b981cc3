"""AlexNet's data augmentation (paper section 4.1) as plain NumPy functions.

Krizhevsky, Sutskever & Hinton, "ImageNet Classification with Deep Convolutional Neural
Networks", NIPS 2012, section 4.1 "Data Augmentation" describes two forms:

 1. Translations and reflections: train on random 224x224 patches of the 256x256 images and
    their horizontal reflections (random_crop, hflip). At test time, average the softmax over
    ten patches: the four corner patches, the centre patch, and their reflections (ten_crop).
 2. Altering the intensities of the RGB channels: add to every pixel multiples of the principal
    components of the RGB pixel values, with magnitudes proportional to the eigenvalues times a
    Gaussian draw of standard deviation 0.1 (pca_lighting).

Layouts: the crop and flip functions take one image as (H, W) or (H, W, C) - the layout Pillow
gives - and return views (no copy). to_chw_float turns an image into the (C, H, W) float32 that
the network eats. normalize and resize_batch_bilinear work on batches (N, C, H, W) and take an
array module `xp` (numpy, or cupy on a GPU) so the same code runs on either device.

Functions that draw random numbers take `rng`, a numpy.random.Generator; the DataLoader hands
each sample its own generator so augmentations do not depend on thread scheduling.
"""

import numbers

import numpy as np

# The principal components of ImageNet's RGB pixel values (scaled to [0, 1]). The paper does not
# publish its numbers; these are the ones fb.resnet.torch computed and most re-implementations use.
PCA_EIGENVALUES = np.array([0.2175, 0.0188, 0.0045])  # lambda_1 >= lambda_2 >= lambda_3
PCA_EIGENVECTORS = np.array([                         # column i is the eigenvector p_i, in RGB
    [-0.5675, 0.7192, 0.4009],
    [-0.5808, -0.0045, -0.8140],
    [-0.5836, -0.6948, 0.4203],
])


def random_crop(img, size, rng):
    """A random size x size patch of `img` (paper section 4.1: 224x224 patches of 256x256 images).

    Args:
        img: (H, W) or (H, W, C) array of any dtype.
        size: int, or (height, width) of the patch; at most the image's size.
        rng: numpy.random.Generator choosing the top-left corner uniformly.

    Returns:
        a view of img, (h, w) or (h, w, C).
    """
    h, w = _pair(size, "random_crop")
    height, width = _check_image(img, h, w, "random_crop")
    top = int(rng.integers(0, height - h + 1))
    left = int(rng.integers(0, width - w + 1))
    return img[top:top + h, left:left + w]


def center_crop(img, size):
    """The central size x size patch of `img` (paper section 4.1, test time; the fifth of ten_crop).

    When the margin is odd the extra pixel goes to the bottom/right, as in torchvision (round down).
    img: (H, W) or (H, W, C). Returns a view, (h, w) or (h, w, C).
    """
    h, w = _pair(size, "center_crop")
    height, width = _check_image(img, h, w, "center_crop")
    top, left = (height - h) // 2, (width - w) // 2
    return img[top:top + h, left:left + w]


def hflip(img):
    """The horizontal reflection (mirror image) of `img` (paper section 4.1).

    img: (H, W) or (H, W, C). Returns a view, same shape: out[:, j] = img[:, W - 1 - j].
    """
    _check_image(img, 1, 1, "hflip")
    return img[:, ::-1]


def ten_crop(img, size):
    """The ten test-time patches of paper section 4.1: four corners, centre, and their reflections.

    Args:
        img: (H, W) or (H, W, C).
        size: int or (height, width).

    Returns:
        (10, h, w) or (10, h, w, C), a new array ordered top-left, top-right, bottom-left,
        bottom-right, centre, then the reflection of each in the same order (out[5 + k] is
        hflip(out[k])). The network's softmax outputs on the ten are averaged.
    """
    h, w = _pair(size, "ten_crop")
    height, width = _check_image(img, h, w, "ten_crop")
    corners = [img[top:top + h, left:left + w] for top, left in ten_crop_corners(height, width, h, w)]
    return np.stack(corners + [hflip(patch) for patch in corners])


def ten_crop_corners(height, width, h, w):
    """The top-left corners (top, left) of ten_crop's five h x w patches of a height x width image,
    in its order: top-left, top-right, bottom-left, bottom-right, centre (center_crop's rounding).
    The one home of the ten-crop geometry: ten_crop cuts one image with it, and
    tinynet.train.ten_crop_batch a whole (N, C, H, W) batch."""
    bottom, right = height - h, width - w
    return [(0, 0), (0, right), (bottom, 0), (bottom, right), (bottom // 2, right // 2)]


def to_chw_float(img):
    """An image as the network eats it: uint8 (H, W, C) or (H, W) -> float32 (C, H, W) in [0, 1].

    Float images are taken to be in [0, 1] already and are only transposed.
    """
    _check_image(img, 1, 1, "to_chw_float")
    if img.ndim == 2:
        img = img[:, :, None]  # (H, W) -> (H, W, 1)
    chw = np.ascontiguousarray(img.transpose(2, 0, 1))  # (H, W, C) -> (C, H, W)
    if chw.dtype == np.uint8:
        return chw.astype(np.float32) / np.float32(255)
    return chw.astype(np.float32, copy=False)


def pca_lighting(img, rng, sigma=0.1, channel_axis=None):
    """Shift an image's colours along the principal components of RGB pixels (paper section 4.1).

    To every pixel I_xy = [R, G, B] the paper adds the same quantity

        [p1, p2, p3] [alpha_1 lambda_1, alpha_2 lambda_2, alpha_3 lambda_3]^T,   alpha_i ~ N(0, sigma^2)

    where p_i, lambda_i are the eigenvectors and eigenvalues of the 3x3 covariance of RGB values
    (PCA_EIGENVECTORS, PCA_EIGENVALUES), drawn once per image each time it is used. The
    shift's covariance is V diag(sigma^2 lambda^2) V^T: object identity should not change with
    the intensity and colour of the illumination. No clipping is done, as in the paper.

    Args:
        img: float image scaled to [0, 1], (H, W, 3) or (3, H, W).
        rng: numpy.random.Generator drawing alpha.
        sigma: standard deviation of alpha (0.1 in the paper).
        channel_axis: the RGB axis; None finds it (the first or last axis, whichever has size 3).

    Returns:
        img + shift, a new array of img's shape and dtype.
    """
    if not np.issubdtype(img.dtype, np.floating):
        raise ValueError(f"pca_lighting: img has dtype {img.dtype}, expected a float image scaled to "
                         "[0, 1] (the eigenvalues are for that scale); use to_chw_float first")
    axis = _channel_axis(img, channel_axis)
    alpha = rng.normal(0.0, sigma, size=3)                # one draw per principal component
    shift = PCA_EIGENVECTORS @ (alpha * PCA_EIGENVALUES)  # (3,) RGB shift, the same for every pixel
    shape = [1] * img.ndim
    shape[axis] = 3                                        # e.g. (3, 1, 1) for CHW, (1, 1, 3) for HWC
    return img + shift.reshape(shape).astype(img.dtype)


def normalize(x, mean, std, xp=np):
    """(x - mean) / std per channel, for x (..., C, H, W): one image (C, H, W) or a batch (N, C, H, W).

    The paper's only pre-processing (section 2) is subtracting the mean over the training set;
    mean and std are sequences of C values. `xp` is the array module of x (numpy or cupy).
    Returns a new array of x's dtype.
    """
    if x.ndim < 3:
        raise ValueError(f"normalize: x has shape {x.shape}, expected (C, H, W) or (N, C, H, W)")
    channels = x.shape[-3]
    mean = xp.asarray(mean, dtype=x.dtype).reshape(-1, 1, 1)  # (C, 1, 1), broadcasts over H, W
    std = xp.asarray(std, dtype=x.dtype).reshape(-1, 1, 1)
    if mean.shape[0] != channels or std.shape[0] != channels:
        raise ValueError(f"normalize: x has {channels} channels (x.shape={x.shape}) but mean has "
                         f"{mean.shape[0]} and std {std.shape[0]} values; expected {channels} each")
    if bool((std <= 0).any()):
        raise ValueError(f"normalize: std={std.ravel().tolist()}, expected positive values")
    return (x - mean) / std


def resize_batch_bilinear(x, size, xp=np):
    """Resize a batch of images with bilinear interpolation, e.g. Fashion-MNIST 28x28 -> 224x224.

    Output pixel (i, j) samples the input at the half-pixel-centre coordinate
    ((i + 0.5) * H / out_h - 0.5, (j + 0.5) * W / out_w - 0.5), clamped to the image, and blends
    the 2x2 input pixels around it. This is PyTorch's F.interpolate(mode="bilinear",
    align_corners=False) and Pillow's BILINEAR when enlarging. When shrinking it only looks at 2x2
    neighbours (no anti-aliasing), so it is meant for enlarging.

    Rows first, then columns (bilinear = linear along H, then linear along W):
        rows = x[:, :, i0, :] * (1 - wy) + x[:, :, i1, :] * wy      (N, C, out_h, W)
        out  = rows[..., j0] * (1 - wx) + rows[..., j1] * wx        (N, C, out_h, out_w)

    Args:
        x: float array (N, C, H, W).
        size: int or (out_h, out_w).
        xp: the array module of x: numpy, or cupy to resize on the GPU.

    Returns:
        (N, C, out_h, out_w), x's dtype.
    """
    if x.ndim != 4:
        raise ValueError(f"resize_batch_bilinear: x has shape {x.shape}, expected (N, C, H, W)")
    if x.dtype.kind != "f":
        raise ValueError(f"resize_batch_bilinear: x has dtype {x.dtype}, expected float "
                         "(convert uint8 images with x.astype(float32) / 255)")
    out_h, out_w = _pair(size, "resize_batch_bilinear")
    i0, i1, wy = _bilinear_taps(x.shape[2], out_h, xp)  # (out_h,) each
    j0, j1, wx = _bilinear_taps(x.shape[3], out_w, xp)  # (out_w,) each
    wy = wy.astype(x.dtype)[:, None]  # (out_h, 1): broadcasts over the W axis
    wx = wx.astype(x.dtype)           # (out_w,)
    rows = x[:, :, i0, :] * (1 - wy) + x[:, :, i1, :] * wy  # (N, C, out_h, W)
    return rows[..., j0] * (1 - wx) + rows[..., j1] * wx    # (N, C, out_h, out_w)


def alexnet_train(img, rng, size=224, lighting_sigma=0.1):
    """The paper's training augmentation (section 4.1) for one uint8 image from an ImageFolder.

    random size x size crop -> horizontal flip with probability 1/2 -> float (C, H, W) in [0, 1]
    -> PCA lighting with sigma `lighting_sigma` (0 turns it off).

    img: uint8 (H, W, 3), shorter side >= size. Returns float32 (3, size, size).
    Use with the DataLoader as transform=alexnet_train (or functools.partial for other sizes).
    """
    patch = random_crop(img, size, rng)
    if rng.random() < 0.5:
        patch = hflip(patch)
    chw = to_chw_float(patch)  # (3, size, size)
    if lighting_sigma:
        chw = pca_lighting(chw, rng, lighting_sigma, channel_axis=0)
    return chw


def alexnet_eval(img, rng=None, size=224):
    """The single-patch evaluation view: the centre size x size crop as float32 (C, size, size).

    `rng` is unused; it is there so the DataLoader can call every transform as transform(img, rng).
    For the paper's 10-patch evaluation use ten_crop.
    """
    return to_chw_float(center_crop(img, size))


def resize_for_crop(size):
    """The shorter side an image is resized to before a size x size crop: the paper's 256 for
    224 (section 2), scaled alike for other sizes."""
    return round(size * 256 / 224)


def pad_crop_flip(pad):
    """Training augmentation for small array images, uint8 (H, W) or (C, H, W): pad by `pad` zeros,
    take a random crop of the original size and mirror it with probability 1/2 (the small-image
    form of the paper's random 224 crops of 256 images, section 4.1)."""
    def transform(img, rng):
        h, w = img.shape[-2:]
        padded = _pad(img, pad)
        top, left = rng.integers(0, 2 * pad + 1, size=2)
        crop = padded[..., top:top + h, left:left + w]
        return np.ascontiguousarray(crop[..., ::-1] if rng.random() < 0.5 else crop)
    return transform


def pad_only(pad):
    """The test view for ten-crop: the padded image whose corner crops are the training shifts."""
    return lambda img, rng=None: _pad(img, pad)


def _pad(img, pad):
    widths = [(0, 0)] * (img.ndim - 2) + [(pad, pad), (pad, pad)]
    return np.pad(img, widths)


def _bilinear_taps(n_in, n_out, xp):
    """For each of n_out output positions: the two input indices to blend and the second's weight."""
    scale = n_in / n_out
    src = (xp.arange(n_out, dtype=xp.float64) + 0.5) * scale - 0.5  # half-pixel centres
    src = xp.clip(src, 0, n_in - 1)    # beyond the edge, repeat the edge pixel
    i0 = xp.floor(src).astype(xp.int64)
    i1 = xp.minimum(i0 + 1, n_in - 1)
    return i0, i1, src - i0            # weight of i1; i0 gets 1 - weight


def _pair(size, fn):
    """size as (height, width) of positive ints; a ValueError naming `fn` otherwise."""
    pair = (size, size) if isinstance(size, numbers.Integral) else size
    if (not isinstance(pair, (tuple, list)) or len(pair) != 2
            or not all(isinstance(s, numbers.Integral) and s > 0 for s in pair)):
        raise ValueError(f"{fn}: size={size!r}, expected a positive int or a pair (height, width) "
                         "of positive ints")
    return int(pair[0]), int(pair[1])


def _check_image(img, h, w, fn):
    """(H, W) of an (H, W) or (H, W, C) image, checking that an h x w patch fits."""
    if img.ndim not in (2, 3):
        raise ValueError(f"{fn}: img has shape {img.shape}, expected (H, W) or (H, W, C)")
    height, width = img.shape[:2]
    if h > height or w > width:
        raise ValueError(f"{fn}: a {h}x{w} patch does not fit in the {height}x{width} image "
                         f"(img.shape={img.shape}); expected size <= the image's height and width")
    return height, width


def _channel_axis(img, channel_axis):
    """The index of the RGB axis of a 3-D image, found or checked."""
    if img.ndim != 3:
        raise ValueError(f"pca_lighting: img has shape {img.shape}, expected (H, W, 3) or (3, H, W)")
    if channel_axis is None:
        first, last = img.shape[0] == 3, img.shape[-1] == 3
        if first == last:
            raise ValueError(f"pca_lighting: cannot tell the RGB axis of an image of shape {img.shape}; "
                             "pass channel_axis=0 for (3, H, W) or channel_axis=-1 for (H, W, 3)")
        return 0 if first else 2
    if img.shape[channel_axis] != 3:
        raise ValueError(f"pca_lighting: channel_axis={channel_axis} has size {img.shape[channel_axis]} "
                         f"(img.shape={img.shape}), expected 3 (RGB)")
    return channel_axis % 3
