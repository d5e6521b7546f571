"""Training: the loop every task shares, its two trainers, and what a run needs around them.

    loop         the loop: update, clip, step, evaluate, checkpoint, roll back, resume (TrainOptions)
    tbptt        the language-model trainer: parallel streams, truncated BPTT windows, carried state
    batches      the dataset trainer: one batch of whole (padded) sequences per update, exact BPTT
    optim        optimizers (SGD, momentum, Adagrad, RMSprop, Adam) that match torch.optim step for step
    schedules    learning-rate schedules: step / exponential decay, reduce on plateau
    clipping     gradient clipping: global norm, per-tensor norm, element-wise value
    checkpoint   checkpoints a crash at any moment leaves loadable; atomic file writes
    runs         open an existing run directory: its checkpoint, checked, and its model
    rundir       choose and check the directory a new run writes to (--out, --overwrite)
    options      the command-line options shared by every command that builds a model, and TrainOptions from them
    config       --config: options from a TOML or JSON file, merged under the command line's
    metrics      accuracy, precision/recall/F1, confusion matrices, ROC AUC, MSE/MAE
    resources    the memory a run will need, estimated before anything is allocated

Imports nothing above the model (the import contract in pyproject.toml checks it).
"""
