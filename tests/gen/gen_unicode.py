#!/usr/bin/env python3
"""Write lib/unicode_hf.h: where HF tokenizers' Unicode tables say more than
the C libraries lora-tokenize uses (PCRE2, utf8proc), read off HF itself.

    python3 tests/gen/gen_unicode.py      (needs tokenizers, cc and libpcre2-dev)

HF compiles tokenizer.json regexes with Oniguruma; lora-tokenize with PCRE2.
Both take the classes from their own Unicode tables: tokenizers 0.23's
Oniguruma knows Unicode 16.0, Debian 12's PCRE2 (10.42) Unicode 14.0, so
every letter, digit, mark or symbol assigned in Unicode 15 and 16 (CJK
extensions H and I, Kawi, Garay, ...) falls in \\p{L} for HF and outside it
for PCRE2, and the words split differently. For each class this writes the
PCRE2 items to use (`base`) and the ranges to add to them (`extra`), so that
[base extra] is, code point for code point, Oniguruma's set. It checks that
PCRE2's base holds nothing Oniguruma's class does not (then adding is
enough); a class where that fails is left out (lora-tokenize then keeps
PCRE2's meaning) and named on stderr.

With a newer PCRE2 (Unicode 15 or 16) the extra ranges are already in base
and change nothing.

The rest of HF's pipeline takes its Unicode from Rust's standard library
(Unicode 17 in the build of tokenizers 0.23): the Lowercase normalizer
(char::to_lowercase) and the Digits pre-tokenizer (char::is_numeric); an
added token's single_word test takes regex-syntax's \\w (Unicode 16).
lora-tokenize takes them from utf8proc (2.8 on Debian 12: Unicode 15). So
this also writes `hf_lower` (each code point whose lower case per HF's
Lowercase differs from utf8proc_tolower's) and `hf_numeric` (the code points
HF's Digits splits off that utf8proc does not call numbers) and `hf_word`
(what single_word counts as a word character beyond tokenizer.c's
is_word_cp), and stops if utf8proc takes a code point HF does not.

HF's NFC, NFD, NFKC and NFKD go the other way: their tables are older than
utf8proc's (about Unicode 9 for combining classes, 12 for decompositions).
`hf_norm_keep` lists the code points they leave as they are where utf8proc
would decompose them or move them as marks; lora-tokenize normalizes the
text between them.
"""
import io
import os
import subprocess
import sys
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
OUT = os.path.join(HERE, "..", "..", "lib", "unicode_hf.h")

# General categories: one- and two-letter names with Oniguruma's long names.
GC = [("L", "Letter"), ("LC", "Cased_Letter"), ("Lu", "Uppercase_Letter"), ("Ll", "Lowercase_Letter"),
      ("Lt", "Titlecase_Letter"), ("Lm", "Modifier_Letter"), ("Lo", "Other_Letter"),
      ("M", "Mark"), ("Mn", "Nonspacing_Mark"), ("Mc", "Spacing_Mark"), ("Me", "Enclosing_Mark"),
      ("N", "Number"), ("Nd", "Decimal_Number"), ("Nl", "Letter_Number"), ("No", "Other_Number"),
      ("P", "Punctuation"), ("Pc", "Connector_Punctuation"), ("Pd", "Dash_Punctuation"),
      ("Ps", "Open_Punctuation"), ("Pe", "Close_Punctuation"), ("Pi", "Initial_Punctuation"),
      ("Pf", "Final_Punctuation"), ("Po", "Other_Punctuation"),
      ("S", "Symbol"), ("Sm", "Math_Symbol"), ("Sc", "Currency_Symbol"), ("Sk", "Modifier_Symbol"),
      ("So", "Other_Symbol"), ("Z", "Separator"), ("Zs", "Space_Separator"), ("Zl", "Line_Separator"),
      ("Zp", "Paragraph_Separator"), ("C", "Other"), ("Cc", "Control"), ("Cf", "Format"),
      ("Co", "Private_Use"), ("Cn", "Unassigned")]

PROBE_C = r"""
#define PCRE2_CODE_UNIT_WIDTH 8
#include <pcre2.h>
#include <stdio.h>
#include <string.h>
/* For each pattern line on stdin: the code points it matches alone, as
 * "start end" hex ranges, then a line "-" ("!" if it does not compile). */
static int enc(unsigned c, unsigned char *o)
{
	if (c < 0x80) { o[0] = c; return 1; }
	if (c < 0x800) { o[0] = 0xC0 | c >> 6; o[1] = 0x80 | (c & 63); return 2; }
	if (c < 0x10000) { o[0] = 0xE0 | c >> 12; o[1] = 0x80 | ((c >> 6) & 63); o[2] = 0x80 | (c & 63); return 3; }
	o[0] = 0xF0 | c >> 18; o[1] = 0x80 | ((c >> 12) & 63); o[2] = 0x80 | ((c >> 6) & 63); o[3] = 0x80 | (c & 63);
	return 4;
}
int main(void)
{
	char line[65536];
	while (fgets(line, sizeof line, stdin)) {
		line[strcspn(line, "\n")] = 0;
		int e;
		PCRE2_SIZE off;
		pcre2_code *re = pcre2_compile((PCRE2_SPTR)line, PCRE2_ZERO_TERMINATED,
		                               PCRE2_UTF | PCRE2_UCP | PCRE2_ANCHORED | PCRE2_ENDANCHORED, &e, &off, NULL);
		if (!re) { puts("!"); fflush(stdout); continue; }
		pcre2_jit_compile(re, PCRE2_JIT_COMPLETE);
		pcre2_match_data *md = pcre2_match_data_create_from_pattern(re, NULL);
		long start = -1;
		for (unsigned c = 0; c <= 0x110000; c++) {
			int m = 0;
			if (c < 0x110000 && !(c >= 0xD800 && c <= 0xDFFF)) {
				unsigned char b[4];
				m = pcre2_match(re, b, enc(c, b), 0, 0, md, NULL) >= 0;
			}
			if (m && start < 0) start = c;
			if (!m && start >= 0) { printf("%lx %x\n", start, c - 1); start = -1; }
		}
		puts("-");
		fflush(stdout);
		pcre2_match_data_free(md);
		pcre2_code_free(re);
	}
	return 0;
}
"""

CPS = [c for c in range(0x110000) if not 0xD800 <= c <= 0xDFFF]
ALL = "".join(chr(c) for c in CPS)


def hf_set(pattern):
    """The code points HF's regex engine matches with `pattern` (one each)."""
    from tokenizers import Regex, pre_tokenizers
    rm = pre_tokenizers.Split(Regex(pattern), "removed")   # keeps what does not match
    keep = bytearray(len(CPS))
    for i in range(0, len(ALL), 65536):
        for _, (a, b) in rm.pre_tokenize_str(ALL[i:i + 65536]):
            keep[i + a:i + b] = b"\x01" * (b - a)
    return {CPS[j] for j in range(len(CPS)) if not keep[j]}


class Pcre2:
    def __init__(self, tmp):
        src, exe = os.path.join(tmp, "probe.c"), os.path.join(tmp, "probe")
        open(src, "w").write(PROBE_C)
        subprocess.run(["cc", "-O2", "-o", exe, src, "-lpcre2-8"], check=True)
        self.p = subprocess.Popen([exe], stdin=subprocess.PIPE, stdout=subprocess.PIPE, text=True)

    def set(self, pattern):
        self.p.stdin.write(pattern + "\n")
        self.p.stdin.flush()
        s = set()
        for line in self.p.stdout:
            line = line.strip()
            if line == "!":
                return None
            if line == "-":
                return s
            a, b = (int(x, 16) for x in line.split())
            s.update(range(a, b + 1))


def ranges(s):
    r = []
    for c in sorted(s):
        if r and r[-1][1] == c - 1:
            r[-1][1] = c
        else:
            r.append([c, c])
    return r


def class_text(s):
    """The code points of s as the inside of a PCRE2 class."""
    return "".join("\\x{%X}" % a if a == b else "\\x{%X}-\\x{%X}" % (a, b) for a, b in ranges(s))


def utf8proc():
    import ctypes
    u = ctypes.CDLL("libutf8proc.so.2")
    u.utf8proc_tolower.restype = ctypes.c_int32
    u.utf8proc_tolower.argtypes = [ctypes.c_int32]
    u.utf8proc_category.restype = ctypes.c_int
    u.utf8proc_category.argtypes = [ctypes.c_int32]
    u.utf8proc_map.argtypes = [ctypes.c_char_p, ctypes.c_ssize_t, ctypes.POINTER(ctypes.c_void_p), ctypes.c_int]
    u.utf8proc_map.restype = ctypes.c_ssize_t
    u.utf8proc_get_property.restype = ctypes.POINTER(ctypes.c_int16)   # category, combining_class, ...
    u.utf8proc_get_property.argtypes = [ctypes.c_int32]
    u.utf8proc_version.restype = ctypes.c_char_p
    return u


def rust_lower():
    """{cp: HF Lowercase of the code point alone} for every code point but '\\n'."""
    from tokenizers import normalizers
    cs = [c for c in CPS if c != 10]
    out = normalizers.Lowercase().normalize_str("\n".join(chr(c) for c in cs)).split("\n")
    assert len(out) == len(cs)
    return dict(zip(cs, out))


def rust_numeric():
    """The code points HF's Digits(individual_digits=True) splits off alone."""
    from tokenizers import pre_tokenizers
    d = pre_tokenizers.Digits(individual_digits=True)
    num = set()
    cs = [c for c in CPS if chr(c) != "a"]
    for i in range(0, len(cs), 32768):
        part = cs[i:i + 32768]
        for piece, (a, b) in d.pre_tokenize_str("".join("a" + chr(c) for c in part)):
            if b - a == 1 and a % 2 == 1:
                num.add(part[a // 2])
    return num


def rust_word():
    """The code points HF's single_word test counts as word characters: an
    added token "zz" with single_word matches in "zz" + c only if c is not."""
    from tokenizers import AddedToken, Tokenizer, models
    t = Tokenizer(models.BPE(vocab={"[UNK]": 0, "z": 1}, merges=[], unk_token="[UNK]"))
    t.add_tokens([AddedToken("zz", single_word=True, normalized=False)])
    zz = t.token_to_id("zz")
    encs = t.encode_batch(["zz" + chr(c) for c in CPS], add_special_tokens=False)
    return {c for c, e in zip(CPS, encs) if e.ids[0] != zz}


def norm_keep(u):
    """The code points HF's normalizers leave as they are where utf8proc
    changes them: HF's tables (unicode-normalization-alignments) are older
    than utf8proc's, so they lack the decompositions and the combining classes
    given since (U+32FF, U+0D3B, ...); with the parts of such decompositions,
    which only compose into what HF does not know."""
    import ctypes
    from tokenizers import normalizers
    libc = ctypes.CDLL(None)

    def up_map(text, opt):
        b = text.encode()
        p = ctypes.c_void_p()
        r = u.utf8proc_map(b, len(b), ctypes.byref(p), opt)
        out = ctypes.string_at(p, r).decode()
        libc.free(p)
        return out
    STABLE, COMPAT, DECOMPOSE = 1 << 1, 1 << 2, 1 << 4
    cs = [c for c in CPS if c != 10]
    text = "\n".join(chr(c) for c in cs)
    keep = set()
    nfd = {}
    for form, opt in (("NFD", STABLE | DECOMPOSE), ("NFKD", STABLE | DECOMPOSE | COMPAT)):
        h = getattr(normalizers, form)().normalize_str(text).split("\n")
        o = up_map(text, opt).split("\n")
        assert len(h) == len(o) == len(cs)
        for c, a, b in zip(cs, h, o):
            if a != b:
                assert a == chr(c), "U+%04X: HF's %s is neither utf8proc's nor the character" % (c, form)
                keep.add(c)
                if form == "NFD":
                    nfd[c] = b
    parts = {ord(x) for d in nfd.values() for x in d}
    # marks: utf8proc gives a combining class, HF reorders nothing around them
    hf = normalizers.NFD()
    for c in cs:
        k = u.utf8proc_get_property(c)[1]
        if k == 0 or c in keep or up_map(chr(c), STABLE | DECOMPOSE) != chr(c):
            continue
        probe, known = ("a\u0301" + chr(c), "a" + chr(c) + "\u0301") if k < 230 else \
                       ("a" + chr(c) + "\u0334", "a\u0334" + chr(c))
        if hf.normalize_str(probe) != known:
            keep.add(c)
    print("normalization: %d code points HF leaves alone, %d parts of their decompositions"
          % (len(keep), len(parts - keep)), file=sys.stderr)
    return keep | parts


def table(o, comment, name, rows):
    """A C array of uint32_t pairs, four a line."""
    if comment:
        o.write("/* %s */\n" % comment)
    o.write("static const uint32_t %s[][2] = {\n" % name)
    for i in range(0, len(rows), 4):
        o.write("\t" + " ".join("{0x%04X, 0x%04X}," % tuple(r) for r in rows[i:i + 4]) + "\n")
    o.write("};\n\n")


def main():
    import tokenizers
    rows = []
    with tempfile.TemporaryDirectory() as tmp:
        pc = Pcre2(tmp)
        extra_all = set()
        unassigned = pc.set("\\p{Cn}")
        todo = [(short, long, "\\p{%s}" % short) for short, long in GC]
        todo += [("d", "", "\\d"), ("w", "", "\\p{L}\\p{M}\\p{Nd}\\p{Nl}\\p{Pc}")]
        for short, long, base in todo:
            want = hf_set("\\%s" % short if short in ("d", "w") else "\\p{%s}" % short)
            have = pc.set("[%s]" % base)
            if have is None:
                print("left out %s: PCRE2 does not compile [%s]" % (short, base), file=sys.stderr)
                continue
            if have - want:
                print("left out %s: PCRE2's %s holds %d code points Oniguruma's does not (e.g. U+%04X)"
                      % (short, base, len(have - want), min(have - want)), file=sys.stderr)
                continue
            extra = want - have
            # what PCRE2 knows but puts elsewhere (\w's circled letters, ², ½)
            # always goes with base; what its tables do not have yet, in extra
            old = extra - unassigned
            if old:
                base += class_text(old)
                extra -= old
            extra_all |= extra
            print("%-3s %7d code points, %5d more than PCRE2's (%d it has not assigned), %4d ranges"
                  % (short, len(want), len(extra) + len(old), len(extra), len(ranges(extra))), file=sys.stderr)
            rows.append((short.lower(), long.lower().replace("_", ""), base, class_text(extra)))
        pc.p.stdin.close()
        pcre2_version = subprocess.run(["pcre2-config", "--version"], capture_output=True, text=True).stdout.strip()
    u = utf8proc()
    lower = []
    for c, low in sorted(rust_lower().items()):
        if c == 0x130:          # the one multi-character lower case (tokenizer.c has it)
            assert low == "i\u0307"
            continue
        assert len(low) == 1, "U+%04X lowers to %d characters" % (c, len(low))
        if ord(low) != u.utf8proc_tolower(c):
            lower.append((c, ord(low)))
    keep = norm_keep(u)
    word = rust_word()
    up_word = {c for c in CPS if 1 <= u.utf8proc_category(c) <= 10 or u.utf8proc_category(c) == 12
               or c in (0x200C, 0x200D)}   # tokenizer.c's is_word_cp: L, M, Nd, Nl, Pc, ZWNJ, ZWJ
    assert not up_word - word, "is_word_cp takes U+%04X, HF does not" % min(up_word - word)
    num = rust_numeric()
    up_num = {c for c in CPS if 9 <= u.utf8proc_category(c) <= 11}   # UTF8PROC_CATEGORY_ND..NO
    assert not up_num - num, "utf8proc calls U+%04X a number, HF does not" % min(up_num - num)
    print("lower: %d code points differ from utf8proc; numeric: %d more than utf8proc's; word: %d more"
          % (len(lower), len(num - up_num), len(word - up_word)), file=sys.stderr)
    up_version = u.utf8proc_version().decode()
    o = io.StringIO()
    o.write("/* unicode_hf.h: generated by tests/gen/gen_unicode.py (tokenizers %s against\n"
            " * PCRE2 %s and utf8proc %s); do not edit.\n"
            " * onig_classes: for each regex class, its names as Oniguruma spells them\n"
            " * (lower case, no '_'), the PCRE2 items that are a subset of Oniguruma's\n"
            " * class and the ranges that complete it (code points PCRE2's older Unicode\n"
            " * tables do not have). See onig_to_pcre() in tokenizer.c.\n"
            " * hf_lower: code point, lower case, where HF's Lowercase (Rust) differs from\n"
            " * utf8proc_tolower; hf_numeric: ranges Rust's char::is_numeric adds to\n"
            " * utf8proc's N categories; hf_norm_keep: ranges HF's NFC, NFD, NFKC, NFKD\n"
            " * leave as they are (older tables) and utf8proc would change; hf_word: ranges\n"
            " * HF's single_word test (regex-syntax's \\w) adds to is_word_cp's. All sorted. */\n" % (tokenizers.__version__, pcre2_version, up_version))
    table(o, "every extra's code points, sorted ranges: text without one needs no extras",
          "onig_extra_all", ranges(extra_all))
    o.write("static const struct onig_class {\n\tconst char *name, *alias, *base, *extra;\n} onig_classes[] = {\n")
    for n, a, b, e in rows:              # PCRE2 text as C strings
        o.write('\t{"%s", "%s", "%s",\n\t "%s"},\n' % (n, a, b.replace("\\", "\\\\"), e.replace("\\", "\\\\")))
    o.write("};\n\n")
    table(o, None, "hf_lower", lower)
    table(o, None, "hf_numeric", ranges(num - up_num))
    table(o, None, "hf_norm_keep", ranges(keep))
    table(o, None, "hf_word", ranges(word - up_word))
    with open(OUT + ".tmp", "w") as f:
        f.write(o.getvalue().rstrip("\n") + "\n")
    os.replace(OUT + ".tmp", OUT)
    print("wrote", OUT, "(%d names)" % len(rows), file=sys.stderr)


if __name__ == "__main__":
    main()
