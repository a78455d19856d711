#!/usr/bin/env python3
"""Write the tokenizer fixtures in tests/fixtures/tokenizer/ from the reference
libraries: HF `tokenizers` (tokenizer.json files, and the GPT-2 pair through
tokenizers.models.BPE, cross-checked against tiktoken) and open_clip's
SimpleTokenizer (CLIP).

    python3 tests/gen/gen_tokenizer.py [--shared ../shared] [--retrain] [--whole-only]

Outputs (all small):
  sotu-<tok>.txt     one line per State of the Union address:
                     "<file> <count> <crc32> <md5>": crc32 of the ids written as
                     decimal numbers joined by single spaces, md5 of that line
                     with its '\n' (the line lora-tokenize --file prints).
  hard-<tok>.jsonl   hard strings: {"text": hex of the UTF-8 bytes (may be
                     invalid UTF-8), "ids": encode without special tokens,
                     "ids_special": with them, "dec": hex of decode(ids,
                     skip_special=False), "dec_skip": hex of
                     decode(ids_special, skip_special=True), "roundtrip": whether
                     decode(ids) gives back the exact input bytes}
  clip-captions.jsonl  captions: {"text", "ids" (open_clip encode, no sot/eot),
                     "tok77": open_clip tokenize(text) row (77, zero padded),
                     "dec": hex of open_clip decode(ids)}
  bpe_simple_vocab_16e6.txt.gz  copied from the open_clip package.
  sotu-whole.txt     all the addresses joined into one text, encoded as one
                     document by each tokenizer.json tokenizer (the real ones
                     and the var-* ones): "<tok> <count> <crc32> <md5>" as in
                     sotu-<tok>.txt. Millions of words in one call: what a
                     user's single big corpus file is.

    --whole-only writes sotu-whole.txt alone, from the var-*.json files
    already here (without retraining them).
"""
import argparse
import hashlib
import html
import json
import os
import shutil
import sys
import unicodedata
import zlib

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "fixtures", "tokenizer")

HARD = [
    "new york and New York City", "Cat cat Cats concatenate [MASK] x [MASK]y  [MASK]  z",
    "a <sep> b<sep>c", "x <SEP> y<SEP>z", "Cat_x Cat1 xCat Cat\u0301 CatCat Cat. (Cat) Cat\u00b2", "1234567 abc123def", "eeee aeiou oooh", "<b>bold</b> <b> x",
    "", " ", "  ", "   ", "\t", "\n", "\n\n", "\r\n", " \t \n ", "a", "A", "Hello world",
    " Hello", "hello", "How are you?", "Hello world\n", "  leading and trailing  ",
    "tabs\tin\tbetween", "multiple   spaces    here", "line1\nline2\n\nline4",
    "trailing newline\n\n\n", "whitespace run      \n\t  \n end",
    "numbers 1 12 123 1234 12345 3.14159 -42 1,000,000 2024-11-23",
    "phone: +1 (555) 123-4567, 0x1F, 1e10, 007",
    "emoji 😀😃😄 👍🏽 👨‍👩‍👧‍👦 🇫🇷 ❤️", "🙂", "😀" * 7,
    "CJK: 日本語のテキスト、中文文本，한국어 텍스트", "漢字", "ｆｕｌｌ－ｗｉｄｔｈ　ＡＢＣ　１２３",
    "combining: e\u0301 a\u0308 n\u0303 \u0041\u030A  precomposed: é ä ñ Å",
    "Zalgo: Z\u0351\u036b\u0343a\u0310\u0352l\u0346g\u0357o", "Ελληνικά και Русский текст",
    "עברית ועברית", "العربية", "हिन्दी भाषा", "ไทย", "İstanbul ΣΊΣΥΦΟΣ straße ǅ ﬁ",
    "code: def f(x):\n    return x**2  # comment\n\tif (a && b) { c[i] = 0; }",
    "#include <stdio.h>\nint main(void) { printf(\"%d\\n\", 42); }",
    "url: https://example.com/path?q=1&r=2#frag  email: a.b@c.org",
    "punctuation!!! ??? ... --- ''' \"\"\" ``` ~~~ ;;; :::",
    "contractions: I'm you're he's we've they'll I'd can't WON'T She'S",
    "quotes ‘single’ “double” «guillemets» „low“", "dashes – — ‒ ― and ellipsis …",
    "nbsp\u00a0here and\u2009thin\u200bzero\u200dwidth", "ideographic\u3000space",
    "vertical\x0btab form\x0cfeed",
    "a\u0085b \u0085 c\u180ed \u180e e\u200bf \u2028g\u2029 h\x1ci\x1d \u00a0\u00a0j \u1680k\u205fl\u3000 \u0085",
    "x \u0085\u0085y\u2028\u2028 z \u180e\u180e\n\u0085", "nul\x00byte and \x01\x02\x7f controls",
    "soft\u00adhyphen", "bom\ufeffmark", "replacement \ufffd char", "private \ue000 use",
    "astral 𝕳𝖊𝖑𝖑𝖔 𐍈 𝄞", "ĠĊ literal bytelevel chars", "▁ literal metaspace ▁▁",
    "<s> special </s> tokens <unk>", "<|begin_of_text|>hi<|end_of_text|>", "<|endoftext|> gpt2",
    "<s>", "a<s>b", " <s> ", "<|eot_id|>",
    "mixed CASE WoRdS and ALLCAPS", "x" * 300, "ab" * 200, " " * 40 + "x", "\n" * 20,
    "The quick brown fox jumps over the lazy dog. " * 5,
    # letters, digits and marks assigned in Unicode 15 and 16 (HF's regex engine
    # knows them, Debian 12's PCRE2 does not: lib/unicode_onig.h)
    "\u025a\U00031856 \U000322d3l \U0001F308\U0002EC9A x\u1c89\u1c8ay \U00010D40\U00010D41\U00010D49 "
    "a\U00011F50\U00011F51b \U0001E4F0\U0001E4F9 \u0897a\u0cf3 \U00016D40\U00016D41",
    # Han by Script (HF), not Script_Extensions (PCRE2's \p{Han}): 、 and 。 are Common
    "\u6f22\u5b57\u3001\u304b\u306a\u3002\u30ab\u30ca\u3005\u3007 \u4e00\u3001\u4e8c",
    # marks and decompositions newer than HF's normalization tables (left as they are)
    "\u0d15\u0d3b\u0d4d e\u0301\u0d3b\u0323 \u32ff \ua7f2 \U00011935\U00011930 a\u0334\u1abf\u0301 \U0001FBF5",
    # single_word ("Cat" in var-wordpiece) next to letters of Unicode 16 and to
    # alphabetic symbols (circled letters): word characters for HF
    "Cat\U00013811 Cat\u24b6 \u24b6Cat \U00010D50Cat Cat",
    # an added token normalized with the text (var-splits: "ation" after Prepend "~")
    "ation station",
]
# invalid UTF-8 (as bytes): handled like Python's bytes.decode('utf-8', 'replace')
HARD_BYTES = [
    b"bad \xff byte", b"\xc3\x28 overlong", b"trunc \xe2\x82", b"\xed\xa0\x80 surrogate",
    b"\xf4\x90\x80\x80 beyond", b"\xc0\xaf slash", b"mixed \xe2\x82\xac ok \x80\x80 bad",
    b"\xf0\x9f\x98", b"end\xe2",
]

CAPTIONS = [
    "a photo of a cat", "a photo of a dog", "Hello, world!", "A PHOTO of  a Cat!", "",
    "a red apple on a wooden table", "two dogs playing in the snow",
    "An astronaut riding a horse on Mars, digital art, trending on artstation",
    "portrait of a woman with long hair, oil painting, 4k, highly detailed",
    "a bowl of soup that looks like a monster, knitted out of wool",
    "sks dog sitting on the beach at sunset", "A cute corgi wearing sunglasses",
    "the Eiffel Tower at night, long exposure photograph", "a cartoon drawing of a happy sun",
    "black and white photo of a 1950s diner", "a watercolor painting of a fox in a forest",
    "a 3D render of a glass sphere on a checkerboard floor", "Tux the penguin holding a fish",
    "a vintage car parked in front of a red brick building",
    "macro shot of a bee on a yellow flower, shallow depth of field",
    "pixel art of a castle, 16-bit", "a man's hat and a woman's shoes",
    "it's a bird... it's a plane!", "they're here; we've won; I'll go; he'd said",
    "fish &amp; chips", "Tom &amp;amp; Jerry", "5 &lt; 6 &gt; 4", "&quot;quoted&quot; text",
    "it&#39;s &#x41;&#66;C", "caf\u00e9 cr\u00e8me br\u00fbl\u00e9e", "cafe\u0301 (combining accent)",
    "na\u00efve r\u00e9sum\u00e9 \u00fcber", "\u00c9COLE FRAN\u00c7AISE", "\u201ccurly quotes\u201d and \u2018single\u2019",
    "emoji \U0001F600 party \U0001F389", "\u65e5\u672c\u306e\u6a4b \u6771\u4eac", "\u041c\u043e\u0441\u043a\u0432\u0430 \u0437\u0438\u043c\u043e\u0439",
    "numbers 123 and 4567 in 2024", "  lots   of\twhitespace\n\nhere  ", "tabs\tand\nnewlines",
    "<start_of_text> in text", "<end_of_text>", "a<end_of_text>b",
    "unbelievable internationalization antidisestablishmentarianism",
    "hyphen-ated words and under_scores", "email me at someone@example.com",
    "https://example.com/image.png", "C++ and C# and F#", "50% off!!! $19.99 only",
    "a very long caption " + "with many repeated words " * 20,
    "Mr. Smith's 2nd-place finish (really?) -- wow", "\u00bd cup of sugar, \u00be done",
    "A dog\u2019s life", "ΣΊΣΥΦΟΣ", "İstanbul",
]


def ids_line(ids):
    return " ".join(str(i) for i in ids)


def hashes(ids):
    s = ids_line(ids).encode()
    return "%08x" % (zlib.crc32(s) & 0xFFFFFFFF), hashlib.md5(s + b"\n").hexdigest()


def hf_tokenizers(shared):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers
    toks = {}
    for name in ("spm32k", "llama3"):
        toks[name] = Tokenizer.from_file(os.path.join(shared, "data/tokenizers", name, "tokenizer.json"))
    g = os.path.join(shared, "data/tokenizers/gpt2")
    gpt2 = Tokenizer(models.BPE.from_file(os.path.join(g, "encoder.json"), os.path.join(g, "vocab.bpe")))
    gpt2.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    gpt2.decoder = decoders.ByteLevel()
    gpt2.add_special_tokens(["<|endoftext|>"])
    toks["gpt2"] = gpt2
    return toks


def tiktoken_gpt2(shared):
    """An independent second reference for GPT-2: tiktoken built from the same files."""
    import tiktoken
    bs = list(range(ord("!"), ord("~") + 1)) + list(range(0xA1, 0xAD)) + list(range(0xAE, 0x100))
    cs = bs[:]
    n = 0
    for b in range(256):
        if b not in bs:
            bs.append(b)
            cs.append(256 + n)
            n += 1
    dec = {chr(c): b for b, c in zip(bs, cs)}
    enc = json.load(open(os.path.join(shared, "data/tokenizers/gpt2/encoder.json")))
    ranks = {bytes(dec[c] for c in tok): i for tok, i in enc.items() if tok != "<|endoftext|>"}
    return tiktoken.Encoding(
        name="gpt2-local",
        pat_str=r"""'(?:[sdmt]|ll|ve|re)| ?\p{L}+| ?\p{N}+| ?[^\s\p{L}\p{N}]+|\s+(?!\S)|\s+""",
        mergeable_ranks=ranks, special_tokens={"<|endoftext|>": 50256})


def gen_sotu(shared, toks):
    d = os.path.join(shared, "data/text/sotu")
    files = sorted(f for f in os.listdir(d) if f.endswith(".txt"))
    texts = []
    for f in files:
        raw = open(os.path.join(d, f), "rb").read()
        texts.append(raw.decode("utf-8", "replace"))
    tt = tiktoken_gpt2(shared)
    for name, tk in toks.items():
        encs = tk.encode_batch(texts, add_special_tokens=False)
        if name == "gpt2":
            for f, t, e in zip(files, texts, encs):
                assert tt.encode_ordinary(t) == e.ids, "tiktoken and tokenizers disagree on " + f
        with open(os.path.join(OUT, "sotu-%s.txt" % name), "w") as o:
            for f, e in zip(files, encs):
                c, m = hashes(e.ids)
                o.write("%s %d %s %s\n" % (f, len(e.ids), c, m))
        print("sotu-%s: %d files, %d tokens" % (name, len(files), sum(len(e.ids) for e in encs)))


def gen_whole(shared, toks):
    d = os.path.join(shared, "data/text/sotu")
    files = sorted(f for f in os.listdir(d) if f.endswith(".txt"))
    raw = b"".join(open(os.path.join(d, f), "rb").read() for f in files)
    text = raw.decode("utf-8", "replace")
    with open(os.path.join(OUT, "sotu-whole.txt"), "w") as o:
        for name, tk in toks.items():
            ids = tk.encode(text, add_special_tokens=False).ids
            c, m = hashes(ids)
            o.write("%s %d %s %s\n" % (name, len(ids), c, m))
            print("sotu-whole %s: %d bytes, %d tokens" % (name, len(raw), len(ids)))


def var_tokenizers():
    from tokenizers import Tokenizer
    names = sorted(f[4:-5] for f in os.listdir(OUT) if f.startswith("var-") and f.endswith(".json"))
    return {"var-" + n: Tokenizer.from_file(os.path.join(OUT, "var-%s.json" % n)) for n in names}


def gen_hard(toks):
    items = [s.encode() for s in HARD] + HARD_BYTES
    for name, tk in toks.items():
        with open(os.path.join(OUT, "hard-%s.jsonl" % name), "w") as o:
            for b in items:
                s = b.decode("utf-8", "replace")
                ids = tk.encode(s, add_special_tokens=False).ids
                ids_sp = tk.encode(s, add_special_tokens=True).ids
                dec = tk.decode(ids, skip_special_tokens=False)
                dec_skip = tk.decode(ids_sp, skip_special_tokens=True)
                o.write(json.dumps({"text": b.hex(), "ids": ids, "ids_special": ids_sp,
                                    "dec": dec.encode().hex(), "dec_skip": dec_skip.encode().hex(),
                                    "roundtrip": dec.encode() == b}) + "\n")
        print("hard-%s: %d strings" % (name, len(items)))


def our_clean(x):
    """What lora-tokenize does instead of ftfy (see lora-tokenize(1))."""
    x = unicodedata.normalize("NFC", x)
    for a, b in (("\u2018", "'"), ("\u2019", "'"), ("\u201a", "'"), ("\u201b", "'"),
                 ("\u201c", '"'), ("\u201d", '"'), ("\u201e", '"'), ("\u201f", '"')):
        x = x.replace(a, b)
    return x


def gen_clip():
    import ftfy
    import open_clip
    from open_clip import tokenizer as ot
    src = os.path.join(os.path.dirname(open_clip.__file__), "bpe_simple_vocab_16e6.txt.gz")
    shutil.copy(src, os.path.join(OUT, "bpe_simple_vocab_16e6.txt.gz"))
    tk = ot.SimpleTokenizer()
    kept = 0
    with open(os.path.join(OUT, "clip-captions.jsonl"), "w") as o:
        for c in CAPTIONS + HARD:
            # only texts where ftfy.fix_text does what our replacement does
            ref = html.unescape(html.unescape(ftfy.fix_text(c)))
            if ref != html.unescape(html.unescape(our_clean(c))):
                print("clip: skipping (ftfy differs):", repr(c)[:60])
                continue
            ids = tk.encode(c)
            row = ot.tokenize([c])[0].tolist()
            o.write(json.dumps({"text": c.encode().hex(), "ids": ids, "tok77": row,
                                "dec": tk.decode(ids).encode().hex()}) + "\n")
            kept += 1
    print("clip-captions: %d texts" % kept)


VARIANTS = ("wordpiece", "clip", "metaspace", "splits", "nosplit", "classes")


def gen_variants(shared, retrain):
    """Small BPE tokenizers trained here with HF tokenizers, one per group of
    pipeline components the real files do not use, and their ids on the hard
    strings: var-<name>.json + hard-var-<name>.jsonl. An existing var-<name>.json
    is kept unless retrain (HF's trainer orders equal counts differently from
    run to run, so each retraining would change every fixture made from it)."""
    from tokenizers import AddedToken, Regex, Tokenizer, decoders, models, normalizers
    from tokenizers import pre_tokenizers as pt, processors, trainers
    d = os.path.join(shared, "data/text/sotu")
    corpus = [open(os.path.join(d, f), encoding="utf-8", errors="replace").read()
              for f in sorted(os.listdir(d))[:6]]
    clip_re = r"""<\|startoftext\|>|<\|endoftext\|>|'s|'t|'re|'ve|'m|'ll|'d|[\p{L}]+|[\p{N}]|[^\s\p{L}\p{N}]+"""
    out = {}
    # WordPiece-style: prefix, NFKC + Lowercase + Strip, WhitespaceSplit, Digits, Bert post
    t = Tokenizer(models.BPE(unk_token="[UNK]", continuing_subword_prefix="##", fuse_unk=False))
    t.normalizer = normalizers.Sequence([normalizers.NFKC(), normalizers.Lowercase(), normalizers.Strip()])
    t.pre_tokenizer = pt.Sequence([pt.WhitespaceSplit(), pt.Digits(individual_digits=True),
                                   pt.Split(Regex("[,.!?;:]"), "isolated")])
    t.decoder = decoders.Sequence([decoders.Replace("##", ""), decoders.Fuse()])
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["[UNK]", "[CLS]", "[SEP]", "[MASK]"],
                             continuing_subword_prefix="##", show_progress=False)
    t.train_from_iterator(corpus, tr)
    t.post_processor = processors.BertProcessing(("[SEP]", t.token_to_id("[SEP]")), ("[CLS]", t.token_to_id("[CLS]")))
    t.add_special_tokens([AddedToken("[MASK]", lstrip=True, rstrip=True)])
    t.add_tokens([AddedToken("new york", normalized=True), AddedToken("Cat", single_word=True, normalized=False)])
    out["wordpiece"] = t
    # CLIP-style tokenizer.json: suffix, Replace regex, Split Removed+invert, Roberta post
    t = Tokenizer(models.BPE(unk_token="<|endoftext|>", end_of_word_suffix="</w>", continuing_subword_prefix=""))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Replace(Regex(r"\s+"), " "), normalizers.Lowercase()])
    t.pre_tokenizer = pt.Sequence([pt.Split(Regex(clip_re), "removed", invert=True), pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Replace("</w>", " ")])
    tr = trainers.BpeTrainer(vocab_size=700, special_tokens=["<|startoftext|>", "<|endoftext|>"], end_of_word_suffix="</w>",
                             initial_alphabet=pt.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(corpus, tr)
    t.post_processor = processors.RobertaProcessing(("<|endoftext|>", t.token_to_id("<|endoftext|>")),
                                                    ("<|startoftext|>", t.token_to_id("<|startoftext|>")))
    out["clip"] = t
    # Metaspace prepend_scheme first, fused unk, template with BOS and EOS, Metaspace decoder
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=True))
    t.normalizer = normalizers.NFKD()
    t.pre_tokenizer = pt.Metaspace(replacement="\u2581", prepend_scheme="first", split=True)
    t.decoder = decoders.Metaspace(replacement="\u2581", prepend_scheme="first")
    tr = trainers.BpeTrainer(vocab_size=400, special_tokens=["<unk>", "<s>", "</s>"], show_progress=False)
    t.train_from_iterator(corpus, tr)
    t.post_processor = processors.TemplateProcessing(single="<s> $A </s>", special_tokens=[("<s>", 1), ("</s>", 2)])
    t.add_tokens([AddedToken("<sep>", lstrip=True, normalized=False)])
    out["metaspace"] = t
    # Split behaviors, ByteLevel with prefix space and regex, Prepend + Strip, decoder Strip
    t = Tokenizer(models.BPE(ignore_merges=True))
    t.normalizer = normalizers.Sequence([normalizers.Strip(left=False, right=True), normalizers.Prepend("~")])
    t.pre_tokenizer = pt.Sequence([pt.Split(Regex(r"\d+"), "merged_with_previous"),
                                   pt.Split("e", "merged_with_next"), pt.Split(Regex("[aou]"), "contiguous"),
                                   pt.Digits(individual_digits=False),
                                   pt.ByteLevel(add_prefix_space=True, use_regex=True)])
    t.decoder = decoders.Sequence([decoders.ByteLevel(), decoders.Strip(" ", 1, 0)])
    tr = trainers.BpeTrainer(vocab_size=600, initial_alphabet=pt.ByteLevel.alphabet(), show_progress=False)
    t.train_from_iterator(corpus, tr)
    t.add_special_tokens([AddedToken("<SEP>", lstrip=True, rstrip=True)])
    t.add_tokens([AddedToken("ation", normalized=True)])
    out["splits"] = t
    # Metaspace always without split (one word per segment), NFC, Strip + Lowercase
    t = Tokenizer(models.BPE(unk_token="<unk>", fuse_unk=False))
    t.normalizer = normalizers.Sequence([normalizers.NFC(), normalizers.Lowercase()])
    t.pre_tokenizer = pt.Metaspace(replacement="_", prepend_scheme="always", split=False)
    t.decoder = decoders.Metaspace(replacement="_", prepend_scheme="always")
    tr = trainers.BpeTrainer(vocab_size=300, special_tokens=["<unk>"], show_progress=False)
    t.train_from_iterator(corpus, tr)
    t.add_tokens([AddedToken("<b>", normalized=False, rstrip=True)])
    out["nosplit"] = t
    # every way a regex names a Unicode class: \p{..} in and out of [...], long
    # names, \pM, \P{..}, \p{^..}, scripts, \d, \w, \W (lib/unicode_onig.h)
    t = Tokenizer(models.BPE(unk_token="<unk>"))
    t.pre_tokenizer = pt.Sequence([
        pt.Split(Regex(r"\p{Han}+|[\p{Hiragana}\p{Katakana}]+|\p{Lu}\p{Ll}*|\p{Letter}+|\d+|[\p{No}\p{Nl}]|\pM"
                       r"|\w+|\p{^L}[\p{Zs}\p{Po}]?|\P{Z}|\W"), "isolated"),
        pt.ByteLevel(add_prefix_space=False, use_regex=False)])
    t.decoder = decoders.ByteLevel()
    tr = trainers.BpeTrainer(vocab_size=500, special_tokens=["<unk>"], initial_alphabet=pt.ByteLevel.alphabet(),
                             show_progress=False)
    t.train_from_iterator(corpus, tr)
    out["classes"] = t
    for name, t in out.items():
        f = os.path.join(OUT, "var-%s.json" % name)
        if retrain or not os.path.exists(f):   # training is not deterministic: keep the fixtures
            t.save(f)
    return {"var-" + k: Tokenizer.from_file(os.path.join(OUT, "var-%s.json" % k)) for k in out}


def main():
    ap = argparse.ArgumentParser()
    ap.add_argument("--shared", default=os.path.join(HERE, "..", "..", "..", "shared"))
    ap.add_argument("--whole-only", action="store_true")
    ap.add_argument("--retrain", action="store_true", help="train the var-*.json tokenizers again")
    a = ap.parse_args()
    os.makedirs(OUT, exist_ok=True)
    toks = hf_tokenizers(a.shared)
    if not a.whole_only:
        gen_hard(dict(toks, **gen_variants(a.shared, a.retrain)))
        gen_clip()
        gen_sotu(a.shared, toks)
    gen_whole(a.shared, dict(toks, **var_tokenizers()))


if __name__ == "__main__":
    sys.exit(main())
