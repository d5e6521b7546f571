"""The `bptt` subcommands, one module each: add_parser(subparsers) and run(args) -> exit status.

    train        the parser of `bptt train` and its dispatch: --config, then --resume or the task's run
    generate     sample text from a language model (or spell numbers with a --task spell run)
    evaluate     loss, bits per character / perplexity, or a task's metrics on labelled data
    predict      a trained task model's outputs for every input
    plot         the training and validation loss curves of a run, as a PNG
    diagnose     vanishing and exploding gradients, measured on a trained model
    gradcheck    BPTT checked by finite differences (or RTRL) on a model built from training options
    bench        bptt timed against PyTorch in this process

A command imports no other command: what two of them share lives in tasks/ or training/.
"""
