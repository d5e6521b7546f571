"""Convert the Japanese corpus that the PyPI package `hironsancorpus` ships (MIT licence) to CoNLL-U.

The package holds 500 sentences (15,520 words) of Japanese news text, one word
per line with its MeCab (IPADIC) analysis and a named-entity IOB tag. This
script writes FORM = the word, XPOS = MeCab's part of speech (名詞 noun, 助詞
particle, ...: a language-specific tag, which is what XPOS is for), UPOS "_",
and the entity tag in MISC as NE=...; the first 90% of the sentences are the
training file and the last 10% the dev file, the split the package itself uses.
The data is not part of bptt: fetch it yourself (pip download hironsancorpus).

    pip download --no-deps hironsancorpus && tar xzf hironsancorpus-0.1.2.tar.gz
    python examples/hironsan_to_conllu.py hironsancorpus-0.1.2/hironsan/corpus/iob_sents.txt OUT_DIR
    bptt train --task tag --column xpos --data OUT_DIR/ja-train.conllu --valid OUT_DIR/ja-dev.conllu
"""

import sys
from pathlib import Path


def main(src: Path, out: Path) -> None:
    sents, sent = [], []
    for line in src.read_text(encoding="utf-8").split("\n"):
        if not line.strip():
            if sent:
                sents.append(sent)
            sent = []
            continue
        cols = line.split("\t")
        sent.append((cols[0], cols[2], cols[-1]))
    if sent:
        sents.append(sent)
    n_train = int(len(sents) * 0.9)
    out.mkdir(parents=True, exist_ok=True)
    for name, part in (("ja-train.conllu", sents[:n_train]), ("ja-dev.conllu", sents[n_train:])):
        blocks = []
        for k, s in enumerate(part, 1):
            rows = [f"# sent_id = {name.split('.')[0]}-{k}", "# text = " + "".join(w for w, _, _ in s)]
            rows += [f"{i}\t{w}\t_\t_\t{pos}\t_\t_\t_\t_\tNE={ne}" for i, (w, pos, ne) in enumerate(s, 1)]
            blocks.append("\n".join(rows) + "\n\n")
        (out / name).write_text("".join(blocks), encoding="utf-8")
        print(f"{out / name}: {len(part)} sentences, {sum(map(len, part)):,} words")


if __name__ == "__main__":
    main(Path(sys.argv[1]), Path(sys.argv[2]))
