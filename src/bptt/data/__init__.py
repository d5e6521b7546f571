"""Data for training: text corpora and vocabularies, and char-rnn style streams for truncated BPTT."""
