"""Training: the fit / evaluate loop of examples/train_alexnet.py, for any model and data, and the
job itself: one RunConfig (every setting once) and run(config).

    tinynet.train.run(tinynet.train.RunConfig(model="alexnet-small", epochs=1))

    trainer = Trainer(model, optimizer, train_loader, test_loader, device="cpu", epochs=10,
                      scheduler=tn.optim.StepLR(optimizer, 8), checkpoint_dir="checkpoints",
                      json_log="runs/log.jsonl")
    history = trainer.fit(resume=True)      # a list of per-epoch log dicts
    evaluate(model, test_loader, "cpu")     # {"loss", "acc", "top5" (more than 5 classes), "n"}

The rooms, in the order a step meets them:
    preprocess.py   BatchPreprocess (a host batch made ready on the device), ten_crop_batch
    loop.py         Trainer: epochs of steps, the NaN check, the epoch's end; TrainingDiverged
    communicator.py the process group the loop runs in: the Communicator Protocol, SingleProcess
    interrupt.py    Ctrl-C: stop at the next step boundary, never inside the update
    evaluation.py   evaluate: loss, accuracy, top-5, optionally over the paper's ten crops
    checkpoint.py   what a training state holds; written atomically, read back and checked
    log.py          the epoch record, its JSON line and printed line, the progress bar
    curves.py       plot_curves: loss and accuracy per epoch as a PNG
    run_config.py   RunConfig: every setting of a run with its default, help and range; the
                    command line, the checks, the recipe line and the checkpoint's settings follow
    job.py          run(config): devices, data, loaders, model, the first lines, then the Trainer
"""
from .checkpoint import (CHECKPOINT_NAME, Checkpoint, CheckpointError, CheckpointMismatch, TrainingState, data_fingerprint,
                         load_checkpoint, save_checkpoint)
from . import diagnose
from .communicator import Communicator, SingleProcess
from .curves import plot_curves
from .evaluation import evaluate
from .log import LogNotWritable
from .loop import Trainer, TrainingDiverged, fit
from .preprocess import BatchPreprocess, ten_crop_batch
from .run_config import RunConfig, SetupError, add_arguments
from .job import run

__all__ = ["BatchPreprocess", "CHECKPOINT_NAME", "Checkpoint", "CheckpointError", "CheckpointMismatch",
           "Communicator", "LogNotWritable", "RunConfig", "SetupError", "SingleProcess", "Trainer", "TrainingDiverged", "TrainingState",
           "add_arguments", "data_fingerprint", "evaluate", "fit", "load_checkpoint", "plot_curves", "run", "save_checkpoint",
           "ten_crop_batch"]
