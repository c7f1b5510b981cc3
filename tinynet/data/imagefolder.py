"""ImageNet-style image folders: one sub-folder of images per class.

    root/train/<class>/*.jpg|jpeg|png
    root/val/<class>/*.jpg|jpeg|png

AlexNet's ImageNet pipeline (paper section 2) rescales every image so that its shorter side is
256 pixels; the training crops of section 4.1 (random 224x224 patches) are then cut from it by
the transforms. The paper also cropped the central 256x256 square here; we keep the whole
rescaled image so that random crops can use all of it.

Unreadable images. A folder of a million JPEGs usually holds a few broken ones, and one bad file
should not stop a week of training. `load(i)` therefore returns None for a file that Pillow
cannot decode, counts it in `skipped` and warns (once per file, with the running count). The
DataLoader leaves such samples out, so that batch is simply a little smaller; nothing is
substituted, and a count you can check tells you how much was lost.

Hostile or odd files. Pillow is asked for the formats the file names promise (JPEG and PNG) and
no other, so a PostScript file named x.jpg is unreadable rather than handed to Ghostscript. An
image's size is known before it is decoded: one whose long side is more than MAX_ASPECT_RATIO
times its short side is unreadable too, since rescaling a 1 x 20000 PNG of 118 bytes to a shorter
side of 256 would make 256 x 5,120,000 pixels (3.9 GB). 16-bit greyscale PNGs are scaled to 8
bits (Pillow's convert("RGB") would clip every value above 255 to white).
"""

import threading
import warnings
from pathlib import Path

import numpy as np

from . import DataError

IMAGE_EXTENSIONS = (".jpg", ".jpeg", ".png")
IMAGE_FORMATS = ("JPEG", "PNG")  # the only formats Image.open may try: what IMAGE_EXTENSIONS promise
# Photographs and panoramas stay below 1:10; 20 leaves room and bounds a rescaled image to
# 20 * resize^2 pixels (3.9 MB at 256).
MAX_ASPECT_RATIO = 20


class UnreadableImageWarning(UserWarning):
    """An image file could not be decoded and was left out of its batch."""


class ImageFolder:
    """The images of one split (train or val) of an image-folder data set.

    Attributes:
        classes: class-folder names, sorted; label i means classes[i].
        class_to_idx: {class name: label}.
        samples: list of (path, label), sorted by class, then by file name.
        skipped: how many loads returned None because the file could not be decoded (a broken
            file loaded in each of 3 epochs counts 3 times).
        unreadable: the set of paths that failed to decode so far.
    """

    def __init__(self, root, split="train", resize=256):
        """
        Args:
            root: the folder holding train/ and val/.
            split: the sub-folder to read, "train" or "val" (any name works).
            resize: the length the shorter side is scaled to in `load`, keeping the aspect
                ratio (paper section 2: 256); None keeps the original size.

        Raises:
            DataError naming the folder: root or root/split missing, no class folders in the
            split, a class folder with no images, or a folder that cannot be read.
        """
        if resize is not None and (not isinstance(resize, int) or resize <= 0):
            raise ValueError(f"ImageFolder: resize={resize!r}, expected a positive int or None")
        self.root = Path(root)
        self.split = split
        self.resize = resize
        split_dir = self.root / split
        if not self.root.is_dir():
            raise DataError(f"ImageFolder: root folder {self.root} does not exist; "
                            f"expected {self.root}/{split}/<class>/*.jpg")
        if not split_dir.is_dir():
            raise DataError(f"ImageFolder: split folder {split_dir} does not exist; "
                            f"expected {split_dir}/<class>/*.jpg")

        # Hidden folders (.ipynb_checkpoints, .DS_Store bundles) are not classes.
        self.classes = sorted(d.name for d in _entries(split_dir, "split folder")
                              if d.is_dir() and not d.name.startswith("."))
        if not self.classes:
            raise DataError(f"ImageFolder: {split_dir} has no class folders; "
                            f"expected {split_dir}/<class>/*.jpg (one folder per class)")
        self.class_to_idx = {name: label for label, name in enumerate(self.classes)}

        self.samples = []
        for label, name in enumerate(self.classes):
            class_dir = split_dir / name
            files = sorted(p for p in _entries(class_dir, "class folder")
                           if p.is_file() and p.suffix.lower() in IMAGE_EXTENSIONS)
            if not files:
                raise DataError(f"ImageFolder: class folder {class_dir} holds no images; "
                                f"expected files ending in {', '.join(IMAGE_EXTENSIONS)}")
            self.samples.extend((path, label) for path in files)

        self.skipped = 0
        self.unreadable = set()
        self._lock = threading.Lock()  # load() runs in the DataLoader's worker threads

    def __len__(self):
        return len(self.samples)

    def __getitem__(self, index):
        """(image, label): image as `load(index)` returns it (None when unreadable), label an int."""
        return self.load(index), self.samples[index][1]

    def load(self, index):
        """Decode image `index` as RGB and rescale its shorter side to `self.resize`.

        Returns:
            uint8 (H, W, 3), RGB, with min(H, W) == resize; or None when the file cannot be
            decoded, is not a JPEG or PNG, or is too thin to rescale (then `skipped` grows by one
            and an UnreadableImageWarning is issued the first time this file fails).
        """
        from PIL import Image  # imported here: only image folders need Pillow

        path = self.samples[index][0]
        try:
            with Image.open(path, formats=IMAGE_FORMATS) as img:  # reads the header only
                _check_aspect_ratio(img.size, self.resize)      # before any pixel is decoded
                img = _to_rgb(img)
        except Image.UnidentifiedImageError as err:  # not an image, or one of another format
            self._count_unreadable(path, OSError(f"{err}: not a {' or '.join(IMAGE_FORMATS)} image"))
            return None
        except (OSError, ValueError, SyntaxError, Image.DecompressionBombError) as err:
            # OSError covers truncated files.
            self._count_unreadable(path, err)
            return None
        if self.resize is not None:
            img = _resize_shorter_side(img, self.resize)
        return np.array(img)  # (H, W, 3) uint8

    def _count_unreadable(self, path, err):
        with self._lock:
            self.skipped += 1
            first_time = path not in self.unreadable
            self.unreadable.add(path)
            count = self.skipped
        if first_time:
            warnings.warn(f"ImageFolder: skipping unreadable image {path} "
                          f"({type(err).__name__}: {err}); {count} image load(s) skipped so far",
                          UnreadableImageWarning, stacklevel=3)

    def __repr__(self):
        return (f"ImageFolder({str(self.root)!r}, split={self.split!r}, resize={self.resize}): "
                f"{len(self.samples)} images, {len(self.classes)} classes")


def _entries(folder, what):
    """The entries of `folder`; a DataError naming it when it cannot be listed (no permission)."""
    try:
        return list(folder.iterdir())
    except OSError as err:
        raise DataError(f"ImageFolder: {what} {folder} cannot be read ({err.strerror or err}); "
                        "give the user running this read and execute permission on it, or move it away") from None


def _check_aspect_ratio(size, resize):
    """ValueError for an image (width, height) that rescaling would make larger than
    MAX_ASPECT_RATIO * resize^2 pixels."""
    width, height = size
    if resize is not None and max(width, height) > MAX_ASPECT_RATIO * min(width, height):
        scale = resize / min(width, height)
        raise ValueError(f"{width} x {height} pixels, a side more than {MAX_ASPECT_RATIO} times the other: "
                         f"rescaled to a shorter side of {resize} it would be {round(width * scale)} x "
                         f"{round(height * scale)}")


def _to_rgb(img):
    """Decode a PIL image as 8-bit RGB: grey, palette, CMYK and RGBA become RGB; 16-bit grey (PNG's
    modes I;16 and I) keeps its top 8 bits, as Pillow reads 16-bit RGB."""
    from PIL import Image
    if img.mode in ("I;16", "I;16B", "I;16L", "I"):
        grey = np.asarray(img).astype(np.int64).clip(0, 65535) >> 8   # 0..65535 -> 0..255
        return Image.fromarray(grey.astype(np.uint8)).convert("RGB")  # (H, W) uint8: mode L
    return img.convert("RGB")


def _resize_shorter_side(img, size):
    """Scale a PIL image so that its shorter side is `size`, keeping the aspect ratio."""
    width, height = img.size
    scale = size / min(width, height)
    new_size = (max(size, round(width * scale)), max(size, round(height * scale)))
    if new_size == (width, height):
        return img
    # Pillow's BILINEAR widens its filter when shrinking, so downscaling is anti-aliased.
    from PIL import Image
    return img.resize(new_size, Image.Resampling.BILINEAR)


def imagenet_classes():
    """The 1000 ImageNet (ILSVRC-2012) class names in class-index order, as torchvision's weights
    number them: 0 tench, 1 goldfish, ..., 207 golden retriever, 281 tabby, ..., 999 toilet tissue.
    From tinynet/data/imagenet_classes.txt (one short WordNet name per line; the two names the
    usual list repeats are told apart: 134 crane (bird) / 517 crane (machine), 638 maillot /
    639 maillot (tank suit))."""
    path = Path(__file__).with_name("imagenet_classes.txt")
    names = path.read_text().splitlines()
    if len(names) != 1000:
        raise DataError(f"{path}: {len(names)} class names, expected 1000")
    return names
