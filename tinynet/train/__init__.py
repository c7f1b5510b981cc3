"""Training: the fit / evaluate loop of examples/train_alexnet.py, for any model and data.

    trainer = Trainer(model, optimizer, train_loader, test_loader, device="cpu", epochs=10,
                      scheduler=tn.optim.StepLR(optimizer, 8), checkpoint_dir="checkpoints",
                      json_log="runs/log.jsonl")
    history = trainer.fit(resume=True)      # a list of per-epoch log dicts
    evaluate(model, test_loader, "cpu")     # {"loss", "acc", "top5" (more than 5 classes), "n"}

The rooms, in the order a step meets them:
    preprocess.py   BatchPreprocess (a host batch made ready on the device), ten_crop_batch
    loop.py         Trainer: epochs of steps, the NaN check, the epoch's end; TrainingDiverged
    comm.py         the process group the loop runs in (SingleProcess, or data parallel ranks)
    interrupt.py    Ctrl-C: stop at the next step boundary, never inside the update
    evaluation.py   evaluate: loss, accuracy, top-5, optionally over the paper's ten crops
    checkpoint.py   what a training state holds; written atomically, read back and checked
    log.py          the epoch record, its JSON line and printed line, the progress bar
    curves.py       plot_curves: loss and accuracy per epoch as a PNG
"""
from .checkpoint import (CHECKPOINT_NAME, Checkpoint, CheckpointError, CheckpointMismatch, data_fingerprint,
                         load_checkpoint, save_checkpoint)
from .comm import SingleProcess
from .curves import plot_curves
from .evaluation import evaluate
from .log import LogNotWritable
from .loop import Trainer, TrainingDiverged, fit
from .preprocess import BatchPreprocess, ten_crop_batch

__all__ = ["BatchPreprocess", "CHECKPOINT_NAME", "Checkpoint", "CheckpointError", "CheckpointMismatch",
           "LogNotWritable", "SingleProcess", "Trainer", "TrainingDiverged",
           "data_fingerprint", "evaluate", "fit", "load_checkpoint", "plot_curves", "save_checkpoint", "ten_crop_batch"]
