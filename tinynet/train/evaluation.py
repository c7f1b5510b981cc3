"""evaluate: a model's mean loss, accuracy and top-5 accuracy on a loader, in eval mode."""
import numpy as np

from .. import functional as F
from ..autograd import no_grad
from ..device import as_device
from .communicator import SingleProcess
from .preprocess import BatchPreprocess, ten_crop_batch


def evaluate(model, loader, device, ten_crop=False, crop_size=None, preprocess=None, comm=None):
    """The model's mean loss and accuracy on every batch of `loader`, in eval mode (no dropout).

    ten_crop: average the softmax over the ten patches of ten_crop_batch (crop_size each) and
        score that average, as the paper does at test time; the loss is then -log of the averaged
        probability of the right class.
    preprocess: host batch -> Tensor on the device (default: BatchPreprocess(device) in the
        model's dtype).
    comm: the process group (tinynet.train.communicator); each rank evaluates its own loader (its shard)
        and the sums are added over the ranks, so every rank returns the whole set's numbers.

    Returns {"loss", "acc", "n"} and "top5" when there are more than 5 classes. Sums stay on the
    device until the end: one synchronisation per call.
    """
    dev = as_device(device)
    xp = dev.xp
    comm = comm or SingleProcess()
    if preprocess is None:
        preprocess = BatchPreprocess(dev, model.parameters()[0].dtype)
    if ten_crop and crop_size is None:
        raise ValueError("evaluate: ten_crop=True needs crop_size (the side of the ten patches)")
    was_training = model.training
    model.eval()
    loss_sum = correct = correct5 = 0
    n = classes = 0
    try:
        with no_grad(), dev.context():
            for xb, yb in loader:
                labels = preprocess.labels(yb) if hasattr(preprocess, "labels") else xp.asarray(yb)
                if ten_crop:
                    probs = sum(_softmax(xp, model(preprocess(np.ascontiguousarray(p))).data)
                                for p in ten_crop_batch(xb, crop_size)) / 10     # (N, classes)
                    picked = xp.take_along_axis(probs, labels[:, None], axis=1)[:, 0]
                    loss_sum = loss_sum - xp.log(xp.maximum(picked, 1e-30)).astype(np.float64).sum()
                    scores = probs
                else:
                    logits = model(preprocess(xb))
                    loss = F.softmax_cross_entropy(logits, labels).data
                    loss_sum = loss_sum + loss.astype(np.float64) * len(yb)
                    scores = logits.data
                classes = scores.shape[1]
                correct = correct + _count_topk(xp, scores, labels, 1)
                if classes > 5:
                    correct5 = correct5 + _count_topk(xp, scores, labels, 5)
                n += len(yb)
    finally:
        model.train(was_training)
    sums = [float(loss_sum), float(correct), float(correct5), n]
    loss_sum, correct, correct5, n = comm.allreduce_sum(sums) if comm.size > 1 else sums
    if n == 0:
        raise ValueError("evaluate: the loader yielded no batches")
    result = {"loss": loss_sum / n, "acc": correct / n, "n": int(n)}
    if classes > 5:
        result["top5"] = correct5 / n
    return result


def _softmax(xp, z):
    """Row-wise softmax of logits z (N, classes), the largest logit subtracted first."""
    e = xp.exp(z - z.max(axis=1, keepdims=True))
    return e / e.sum(axis=1, keepdims=True)


def _count_topk(xp, scores, labels, k):
    """How many rows (N, classes) have their label among their k best scores. The label's rank
    is its place in a stable descending sort: the classes scored higher, plus the equal ones
    listed before it (so k=1 is argmax, and a row of equal scores is not a hit for every label).
    A row holding a NaN or inf ranks nothing and is never a hit (every comparison with NaN is
    False, so its label would otherwise come first)."""
    picked = xp.take_along_axis(scores, labels[:, None], axis=1)                  # (N, 1)
    before = xp.arange(scores.shape[1])[None, :] < labels[:, None]                # (N, classes)
    rank = (scores > picked).sum(axis=1) + ((scores == picked) & before).sum(axis=1)
    return ((rank < k) & xp.isfinite(scores).all(axis=1)).sum()
