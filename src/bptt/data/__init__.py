"""Data: reading and batching what the tasks train on.

    text         text corpora (the built-in one, files checked for encoding) and vocabularies
    streams      char-rnn style batching for truncated BPTT: B parallel streams read in chunks
    batching     a Batch of padded sequences, masks, and length-bucketed, seeded batches of a dataset
    conllu       CoNLL-U files for tagging: read words and tags, write predictions
    tabular      labelled texts (TSV/CSV) for classification, float sequences (CSV) for regression
    vectors      pretrained word vectors (word2vec / GloVe text) for an embedding table
    synthetic    the long-memory benchmarks (adding, copy, temporal order), generated on the fly

Of bptt it imports only errors.
"""
