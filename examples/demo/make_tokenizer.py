#!/usr/bin/env python3
"""Make examples/demo/base/tokenizer.json: a 4096-token byte-level BPE (GPT-2
style, HF `tokenizers`) trained on the 19th-century State of the Union
addresses in ../shared/data/text/sotu. The demo uses it instead of a 32k
vocabulary so that the output layer of its small model stays cheap on a CPU.
Run once (the result is committed): python3 examples/demo/make_tokenizer.py"""
import glob, os
from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers

HERE = os.path.dirname(os.path.abspath(__file__))
files = sorted(glob.glob(os.path.join(HERE, '..', '..', '..', 'shared', 'data', 'text', 'sotu', '18*.txt')))
tok = Tokenizer(models.BPE())
tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
tok.decoder = decoders.ByteLevel()
trainer = trainers.BpeTrainer(vocab_size=4096, special_tokens=['<s>', '</s>'],
                              initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
                              show_progress=False)
tok.train(files, trainer)
tok.save(os.path.join(HERE, 'base', 'tokenizer.json'))
print('vocab', tok.get_vocab_size(), 'from', len(files), 'files')
