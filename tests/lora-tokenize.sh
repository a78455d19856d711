#!/bin/sh
# lora-tokenize: usage matches the man page, options work as documented, the
# whole State of the Union corpus gives HF tokenizers' ids (md5 per document
# in tests/fixtures/tokenizer/sotu-*.txt, made by tests/gen/gen_tokenizer.py),
# errors exit 1 (2 for usage) with a message.
T=$BIN/lora-tokenize
# The full corpus runs with the release build when there is one (bin/ is
# built by make check too); the sanitizer build is used for everything else.
REL=$T
[ -x bin/lora-tokenize ] && REL=$(pwd)/bin/lora-tokenize
TOK=$SHARED/data/tokenizers
FX=$FIXTURES/tokenizer
CLIP=$FX/bpe_simple_vocab_16e6.txt.gz
t=$TMPDIR
. "$(dirname "$0")/lib.sh"

[ -d "$TOK" ] || { echo "no tokenizers in $TOK"; exit 77; }

# ---- usage() is the man page's SYNOPSIS ----------------------------------------------
. "$(dirname "$0")/synopsis.sh"
man_synopsis "$(dirname "$0")/../man/lora-tokenize.1" lora-tokenize > $t/syn.man
$T --help | help_synopsis lora-tokenize > $t/syn.usage
check "usage matches the man page synopsis" matches $t/syn.man $t/syn.usage
check "the synopsis was found (it names --skip-special)" grep -q -- '--skip-special' $t/syn.man

# ---- every SOTU address, three tokenizers, against HF tokenizers -----------------------------
for name in spm32k llama3 gpt2; do
	case $name in gpt2) tf=$TOK/gpt2/vocab.bpe ;; *) tf=$TOK/$name/tokenizer.json ;; esac
	awk '{ print $1 }' $FX/sotu-$name.txt > $t/files
	files=$(sed "s|^|$SHARED/data/text/sotu/|" $t/files)
	# shellcheck disable=SC2086
	$REL -t $tf --file $files > $t/ids || { bad "$name: exit $?"; continue; }
	rm -rf $t/docs && mkdir $t/docs && (cd $t/docs && split -l 1 -a 4 ../ids d.)
	md5sum $t/docs/d.* | cut -d' ' -f1 > $t/got
	awk '{ print $4 }' $FX/sotu-$name.txt > $t/want
	check "$name: ids of all $(wc -l < $t/want) SOTU addresses match HF tokenizers" matches $t/want $t/got
	awk '{ print NF }' $t/ids > $t/got
	awk '{ print $2 }' $FX/sotu-$name.txt > $t/want
	check "$name: the id counts match" matches $t/want $t/got
done

# ---- the whole corpus as one document: millions of words in one call ---------------------------
# (the pre-tokenizer hands words on in batches and BPE holds one run of
# symbols at a time: this is where a batch boundary would show)
awk '{ print $1 }' $FX/sotu-spm32k.txt | sed "s|^|$SHARED/data/text/sotu/|" | xargs cat > $t/whole.txt
while read -r name count _ md5; do
	case $name in
	gpt2) tf=$TOK/gpt2/vocab.bpe ;;
	var-*) tf=$FX/$name.json ;;
	*) tf=$TOK/$name/tokenizer.json ;;
	esac
	$REL -t $tf --file $t/whole.txt > $t/ids || { bad "$name, whole corpus: exit $?"; continue; }
	check "$name: the whole corpus as one text gives HF's $count ids" \
		test "$(md5sum < $t/ids | cut -d' ' -f1) $(awk '{ print NF }' $t/ids)" = "$md5 $count"
done < $FX/sotu-whole.txt
rm -f $t/whole.txt

# ---- options -----------------------------------------------------------------------------------
# Test vectors from FORMATS.md 6.1 / 6.4 (third-party suites) and HF tokenizers.
printf 'a photo of a cat\na photo of a dog\nHello, world!\nA PHOTO of  a Cat!\n\n' > $t/cap
cat > $t/want <<EOF
49406 320 1125 539 320 2368 49407
49406 320 1125 539 320 1929 49407
49406 3306 267 1002 256 49407
49406 320 1125 539 320 2368 256 49407
49406 49407
EOF
$T -t $CLIP --bos --eos $t/cap > $t/got
check "clip: FORMATS.md test vectors" matches $t/want $t/got
printf 'a photo of a cat\n' | $T -t $CLIP --bos --eos --max-len 77 --pad | tr ' ' '\n' > $t/got
{ printf '49406\n320\n1125\n539\n320\n2368\n'; i=0; while [ $i -lt 71 ]; do echo 49407; i=$((i+1)); done; } > $t/want
check "clip: --max-len 77 --pad gives 77 ids padded with 49407" matches $t/want $t/got
printf 'a photo of a cat\n' | $T -t $CLIP --bos --eos --max-len 4 > $t/got
echo "49406 320 1125 49407" > $t/want
check "clip: truncation keeps the EOS last" matches $t/want $t/got
printf '49406 320 1125 539 320 2368 49407\n' | $T -t $CLIP --decode --skip-special > $t/got
echo "a photo of a cat " > $t/want
check "clip: --decode --skip-special (open_clip keeps </w> as a space)" matches $t/want $t/got

printf 'Hello world\n' | $T -t $TOK/gpt2/encoder.json > $t/got
echo "15496 995" > $t/want
check "gpt2 via encoder.json: FORMATS.md 6.4 vector" matches $t/want $t/got

printf 'Hello world\n' | $T -t $TOK/spm32k --bos > $t/got
echo "1 22557 1526" > $t/want
check "spm32k folder, --bos" matches $t/want $t/got

printf 'one\tHello world\tthree\nx\ty\n' | $T -t $TOK/gpt2/vocab.bpe --field 2 > $t/got
printf 'one\t15496 995\tthree\nx\t88\n' > $t/want
check "--field 2 passes the other fields through" matches $t/want $t/got
$T -t $TOK/gpt2/vocab.bpe --field 2 --decode $t/got > $t/back
printf 'one\tHello world\tthree\nx\ty\n' > $t/want
check "--field 2 --decode" matches $t/want $t/back

printf '{"text": "Hello world", "n": 1}\n{"id": 2, "text": "Hello"}\n' | $T -t $TOK/gpt2/vocab.bpe --jsonl text > $t/got
printf '15496 995\n15496\n' > $t/want
check "--jsonl text" matches $t/want $t/got
printf '\357\273\277{"text": "Hello world", "n": 1}\n{"id": 2, "text": "Hello"}\n' > $t/bom.jsonl
$T -t $TOK/gpt2/vocab.bpe --jsonl text $t/bom.jsonl > $t/got
check "--jsonl: a UTF-8 byte-order mark at the start is skipped" matches $t/want $t/got
printf '\357\273\277Hello world\nHello\n' | $T -t $TOK/gpt2/vocab.bpe > $t/got
check "lines: the byte-order mark is skipped" matches $t/want $t/got
printf 'Hello world\r\nHello\r\n' | $T -t $TOK/gpt2/vocab.bpe > $t/got
check "lines: a Windows line end is no part of the record" matches $t/want $t/got
# --file: newlines as Python's text mode reads them ('x\r\r\ny\r' is 'x\n\ny\n')
printf 'x\n\ny\n' | $T -t $TOK/gpt2/vocab.bpe --file > $t/want
printf 'x\r\r\ny\r' | $T -t $TOK/gpt2/vocab.bpe --file > $t/got
check "--file: CR LF and a lone CR read as LF" matches $t/want $t/got

printf 'Hello world\n\nÜber 100 €!\n\tTabs  and   spaces \n' > $t/text
$T -t $TOK/spm32k/tokenizer.json --bos --eos $t/text | $T -t $TOK/spm32k/tokenizer.json --decode --skip-special > $t/got
check "spm32k: encode | decode --skip-special round-trips" matches $t/text $t/got
$T -t $TOK/gpt2/vocab.bpe $t/text | $T -t $TOK/gpt2/vocab.bpe --decode > $t/got
check "gpt2: encode | decode round-trips" matches $t/text $t/got
$T -t $TOK/gpt2/vocab.bpe --count $t/text > $t/got
$T -t $TOK/gpt2/vocab.bpe $t/text | awk '{ print NF }' > $t/want
check "--count per line" matches $t/want $t/got
f1=$SHARED/data/text/sotu/$(head -1 $FX/sotu-gpt2.txt | cut -d' ' -f1)
$T -t $TOK/gpt2/vocab.bpe --file --count "$f1" > $t/got
echo "$(head -1 $FX/sotu-gpt2.txt | cut -d' ' -f2) $f1" > $t/want
check "--file --count: count and name" matches $t/want $t/got

cat $t/text | $T -t $TOK/gpt2/vocab.bpe --file > $t/got
holds "--file keeps newlines (id 198)" '[ "$(wc -l < $t/got)" -eq 1 ] && grep -q " 198 " $t/got'

# ---- errors ------------------------------------------------------------------------------------------
expect_fail() {   # name code pattern cmd...
	name=$1 code=$2 pat=$3
	shift 3
	"$@" > $t/out 2> $t/err
	rc=$?
	if [ $rc -eq "$code" ] && grep -q -- "$pat" $t/err && [ "$(wc -l < $t/err)" -le 3 ]; then
		ok "$name"
	else
		bad "$name: exit $rc, stderr:"
		cat $t/err
	fi
}
expect_fail "missing tokenizer" 1 "cannot open '/nonexistent.json'" $T -t /nonexistent.json $t/text
expect_fail "no -t is a usage error" 2 "usage:" $T $t/text
expect_fail "--pad without --max-len" 2 "needs --max-len" $T -t $CLIP --pad $t/text
expect_fail "unknown option" 2 "usage:" $T -t $CLIP --frobnicate
echo '1 2 x' > $t/bad
expect_fail "bad id line names file and line" 1 "bad:1: not a token id" $T -t $CLIP --decode $t/bad
echo '99999999' > $t/bad
expect_fail "out-of-range id" 1 "out of range" $T -t $CLIP --decode $t/bad
printf 'a\tb\n' > $t/bad
expect_fail "missing field" 1 "no field 3" $T -t $CLIP --field 3 $t/bad
printf '{"x": 1}\n' > $t/bad
expect_fail "jsonl without the key" 1 'no string "text"' $T -t $CLIP --jsonl text $t/bad
printf '{"model": {"type": "WordPiece", "vocab": {}}}' > $t/wp.json
expect_fail "unsupported model named" 1 "unsupported model 'WordPiece'" $T -t $t/wp.json $t/text
expect_fail "missing input file" 1 "cannot open '/nonexistent.txt'" $T -t $CLIP /nonexistent.txt

finish
