"""Training: the loop every task shares, its two trainers, optimizers, schedules, clipping,
checkpoints and run directories, metrics and memory estimates. Imports only layers, model and data."""
