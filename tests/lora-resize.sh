#!/bin/sh
# Tool test for lora-resize: options, naming, output lines, bad input.
# Pixel values are checked against Pillow by test-resize (same lib code);
# expected sizes here come from the Pillow/kohya manifest, not from the tool.
T=$TMPDIR
R=$BIN/lora-resize
F=$FIXTURES/resize
M=$F/manifest.tsv
. "$(dirname "$0")/lib.sh"
differ() { ! cmp -s "$1" "$2"; }
# canvas size the reference made: want SRC FILTER MODE SIZE NOUP -> "W<TAB>H"
want() { awk -F'\t' -v s="$1" -v f="$2" -v m="$3" -v z="$4" -v n="$5" \
	'$1=="resize" && $2==s && $3==f && $4==m && $5==z && $6==n { print $15 "\t" $16; exit }' "$M"; }

# ---- usage and synopsis ---------------------------------------------------------
. "$(dirname "$0")/synopsis.sh"
check "--help prints the man page SYNOPSIS" synopsis_matches "$R" "$(dirname "$0")/../man/lora-resize.1"
"$R" >/dev/null 2>&1; check "missing -o is a usage error (2)" [ $? -eq 2 ]
"$R" -o "$T/x" -s 0 a.png >/dev/null 2>&1; check "bad --size is a usage error" [ $? -eq 2 ]
"$R" -o "$T/x" --fit --bucket a.png >/dev/null 2>&1; check "--fit with --bucket is a usage error" [ $? -eq 2 ]
"$R" -o "$T/x" --filter nearest a.png >/dev/null 2>&1; check "unknown --filter is a usage error" [ $? -eq 2 ]
"$R" -o "$T/x" --background pink a.png >/dev/null 2>&1; check "bad --background is a usage error" [ $? -eq 2 ]
"$R" -o "$T/x" --quality 101 a.png >/dev/null 2>&1; check "--quality over 100 is a usage error" [ $? -eq 2 ]

# ---- the default job --------------------------------------------------------------
"$R" -o "$T/o1" -s 128 "$F/photo.jpg" "$F/cat.png" "$F/pear.png" >"$T/out" 2>"$T/err"
check "three good images: exit 0" [ $? -eq 0 ]
printf '%s\t128\t128\n' "$T/o1/photo.png" "$T/o1/cat.png" "$T/o1/pear.png" >"$T/expect"
check "one line per image, in input order" cmp -s "$T/expect" "$T/out"
check "nothing on stderr" [ ! -s "$T/err" ]
check "outputs are PNG files" [ "$(head -c 4 "$T/o1/cat.png" | od -An -c | tr -d ' ')" = "211PNG" ]
check "no temporary files left" [ "$(ls "$T/o1" | wc -l)" -eq 3 ]
"$R" -o "$T/o1b" -s 64 "$T/o1/photo.png" "$T/o1/cat.png" "$T/o1/pear.png" >/dev/null 2>"$T/err"
holds "the written PNGs read back (CRCs, zlib stream, filters)" '[ $? -eq 0 ] && [ ! -s "$T/err" ]'

# stdin lines with passthrough fields; blank lines ignored
printf '%s\ta caption\textra\n\n%s\n' "$F/cat.png" "$F/photo.jpg" | "$R" -o "$T/o2" -s 96 >"$T/out"
printf '%s\t96\t96\ta caption\textra\n%s\t96\t96\n' "$T/o2/cat.png" "$T/o2/photo.png" >"$T/expect"
check "stdin: first field is the path, the rest passes through" cmp -s "$T/expect" "$T/out"

"$R" -o "$T/o2b/" -s 96 "$F/cat.png" >"$T/out"
check "a trailing slash on -o gives clean paths" [ "$(cut -f1 "$T/out")" = "$T/o2b/cat.png" ]

# same base names never overwrite each other
mkdir -p "$T/a" "$T/b"
cp "$F/cat.png" "$T/a/img.png"; cp "$F/pear.png" "$T/b/img.png"; cp "$F/photo.jpg" "$T/b/img.jpg"
"$R" -o "$T/o3" -s 64 "$T/a/img.png" "$T/b/img.png" "$T/b/img.jpg" >"$T/out"
printf '%s\t64\t64\n' "$T/o3/img.png" "$T/o3/img-1.png" "$T/o3/img-2.png" >"$T/expect"
check "equal base names get distinct outputs" cmp -s "$T/expect" "$T/out"
check "three distinct files" [ "$(ls "$T/o3" | wc -l)" -eq 3 ]

# -j 1 and -j 2 give identical files and lines
"$R" -o "$T/j1" -s 64 -j 1 "$F/cat.png" "$F/photo.jpg" "$F/pear.png" "$F/exif-6.jpg" | sed "s|$T/j1|D|" >"$T/l1"
"$R" -o "$T/j2" -s 64 -j 2 "$F/cat.png" "$F/photo.jpg" "$F/pear.png" "$F/exif-6.jpg" | sed "s|$T/j2|D|" >"$T/l2"
check "-j 2 prints the same lines as -j 1" cmp -s "$T/l1" "$T/l2"
same=1; for f in cat photo pear exif-6; do cmp -s "$T/j1/$f.png" "$T/j2/$f.png" || same=0; done
check "-j 2 writes the same bytes as -j 1" [ $same -eq 1 ]

# ---- modes and their options ------------------------------------------------------
"$R" -o "$T/o4" --bucket -s 192 --bucket-min 96 --bucket-max 384 --bucket-step 32 "$F/photo.jpg" "$F/cat.png" \
	| cut -f2,3 >"$T/out"
{ want photo.jpg lanczos bucket 192 0; want cat.png bicubic bucket 192 0; } >"$T/expect"
check "--bucket sizes equal kohya's buckets" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o5" --bucket --no-upscale -s 192 --bucket-min 96 --bucket-max 384 --bucket-step 32 "$F/photo.jpg" \
	| cut -f2,3 >"$T/out"
want photo.jpg lanczos bucket 192 1 >"$T/expect"
check "--bucket --no-upscale equals kohya's bucket_no_upscale" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o5b" --bucket -s 192 "$F/photo.jpg" | cut -f2,3 >"$T/out"
check "--bucket-min/max/step change the buckets" [ "$(cat "$T/out")" != "$(cat "$T/expect")" ]
"$R" -o "$T/o6" -s 384 --no-upscale "$F/pear.png" | cut -f2,3 >"$T/out"
want pear.png lanczos crop 384 1 >"$T/expect"
check "--no-upscale keeps a small image at its size" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o7" -s 384 --min-size 0 "$F/pear.png" | cut -f2,3 >"$T/out"
want pear.png lanczos crop 384 0 >"$T/expect"
check "without --no-upscale it grows" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o8" --fit -s 160 "$F/pear.png" | cut -f2,3 >"$T/out"
want pear.png lanczos fit 160 0 >"$T/expect"
check "--fit pads to a square" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o9" --fit -s 160 --background 000000 "$F/pear.png" >/dev/null
"$R" -o "$T/o10" --fit -s 160 --background black "$F/pear.png" >/dev/null
"$R" -o "$T/o11" --fit -s 160 --background '#ffffff' "$F/pear.png" >/dev/null
check "--background changes the padding" differ "$T/o8/pear.png" "$T/o9/pear.png"
check "--background black = 000000" cmp -s "$T/o9/pear.png" "$T/o10/pear.png"
check "--background #ffffff = the default white" cmp -s "$T/o8/pear.png" "$T/o11/pear.png"
"$R" -o "$T/o12" -s 96 --filter box "$F/cat.png" >/dev/null
"$R" -o "$T/o13" -s 96 --filter bicubic "$F/cat.png" >/dev/null
"$R" -o "$T/o14" -s 96 --filter lanczos "$F/cat.png" >/dev/null
check "--filter box differs from lanczos" differ "$T/o12/cat.png" "$T/o14/cat.png"
check "--filter bicubic differs from lanczos" differ "$T/o13/cat.png" "$T/o14/cat.png"
check "lanczos is the default" cmp -s "$T/o14/cat.png" "$T/o2/cat.png"
"$R" -o "$T/o15" -s 96 --quality 90 "$F/cat.png" >"$T/out"
holds "--quality writes JPEG" '[ "$(cut -f1 "$T/out")" = "$T/o15/cat.jpg" ] &&
	[ "$(head -c 2 "$T/o15/cat.jpg" | od -An -tx1 | tr -d " ")" = "ffd8" ]'
"$R" -o "$T/o16" -s 96 --quality 30 "$F/cat.png" >/dev/null
"$R" -o "$T/o15b" -s 64 "$T/o15/cat.jpg" >/dev/null 2>"$T/err"
holds "the written JPEG reads back" '[ $? -eq 0 ] && [ ! -s "$T/err" ]'
check "--quality changes the size" [ "$(wc -c <"$T/o16/cat.jpg")" -lt "$(wc -c <"$T/o15/cat.jpg")" ]

# --jpeg-draft: same sizes, different (approximate) pixels for JPEG only
"$R" -o "$T/o16b" -s 96 --jpeg-draft "$F/photo.jpg" "$F/cat.png" "$F/exif-6.jpg" | cut -f2,3 >"$T/out"
printf '96\t96\n96\t96\n96\t96\n' >"$T/expect"
check "--jpeg-draft keeps the output sizes" cmp -s "$T/expect" "$T/out"
"$R" -o "$T/o16c" -s 96 "$F/photo.jpg" "$F/cat.png" >/dev/null
check "--jpeg-draft shrinks a large JPEG in the DCT" differ "$T/o16b/photo.png" "$T/o16c/photo.png"
check "--jpeg-draft leaves PNG alone" cmp -s "$T/o16b/cat.png" "$T/o16c/cat.png"

# --min-size and the default minimum (short side < size/2)
"$R" -o "$T/o17" -s 640 "$F/cat.png" "$F/photo.jpg" >"$T/out" 2>"$T/err"
check "small image skipped with exit 0" [ $? -eq 0 ]
check "skip warning names the file" grep -q "lora-resize: warning: '$F/cat.png': 451x300 is smaller than the minimum size 320" "$T/err"
check "the other image is written" [ "$(cut -f1 "$T/out")" = "$T/o17/photo.png" ]
"$R" -o "$T/o18" -s 512 --min-size 300 "$F/cat.png" >"$T/out" 2>"$T/err"
check "--min-size lowers the minimum" [ "$(cut -f2,3 "$T/out")" = "$(printf '512\t512')" ]

# --dedupe
cp "$F/cat.png" "$T/copy.png"
"$R" -o "$T/o19" -s 64 --dedupe "$F/cat.png" "$F/photo.jpg" "$T/copy.png" >"$T/out" 2>"$T/err"
check "--dedupe: exit 0" [ $? -eq 0 ]
check "--dedupe names the duplicate and the original" grep -q "'$T/copy.png': duplicate of '$F/cat.png'" "$T/err"
check "--dedupe writes only distinct images" [ "$(wc -l <"$T/out")" -eq 2 ]
"$R" -o "$T/o20" -s 64 "$F/cat.png" "$T/copy.png" >"$T/out" 2>"$T/err"
check "without --dedupe both are written" [ "$(wc -l <"$T/out")" -eq 2 ]

# ---- bad input: one line each, the batch goes on, exit 1, no partial output ------------
printf 'hello\n' >"$T/text.png"
: >"$T/empty.jpg"
head -c 20000 "$F/cat.png" >"$T/trunc.png"
head -c 30000 "$F/photo.jpg" >"$T/trunc.jpg"
"$R" -o "$T/o21" -s 64 "$T/missing.png" "$T/text.png" "$F/cat.png" "$T/empty.jpg" "$T/trunc.png" \
	"$T/trunc.jpg" >"$T/out" 2>"$T/err"
check "bad inputs: exit 1" [ $? -eq 1 ]
check "bad inputs: the good one is written" [ "$(cut -f1 "$T/out")" = "$T/o21/cat.png" ]
check "bad inputs: one stderr line each" [ "$(wc -l <"$T/err")" -eq 5 ]
check "missing file named" grep -q "cannot open '$T/missing.png': No such file" "$T/err"
check "non-image named" grep -q "'$T/text.png': not a PNG or JPEG file" "$T/err"
check "empty file named" grep -q "'$T/empty.jpg': empty file" "$T/err"
check "truncated PNG named" grep -q "'$T/trunc.png': " "$T/err"
check "truncated JPEG named" grep -q "'$T/trunc.jpg': truncated" "$T/err"
check "no output or temporary for bad inputs" [ "$(ls "$T/o21")" = "cat.png" ]
"$R" -o "$T/o22" -s 64 --max-pixels 150000 "$F/cat.png" "$F/photo.jpg" >"$T/out" 2>"$T/err"
check "--max-pixels: exit 1" [ $? -eq 1 ]
check "--max-pixels refuses the large one" grep -q "'$F/photo.jpg': 640x427 is over the pixel limit 150000" "$T/err"
check "--max-pixels keeps the small one" [ "$(cut -f1 "$T/out")" = "$T/o22/cat.png" ]
: >"$T/notadir"
"$R" -o "$T/notadir" "$F/cat.png" >/dev/null 2>"$T/err"
holds "-o naming a file fails" '[ $? -eq 1 ] && grep -q "is not a directory" "$T/err"'

# a full disk: a 64 KiB tmpfs (needs root; skipped otherwise)
mkdir -p "$T/full"
if mount -t tmpfs -o size=64k tmpfs "$T/full" 2>/dev/null; then
	# one image at a time, so which one fits is fixed (side by side, a
	# failing image's partial temporary can crowd out the one that fits)
	"$R" -j 1 -o "$T/full" -s 256 "$F/cat.png" "$F/photo.jpg" "$F/pear.png" >"$T/out" 2>"$T/err"
	rc=$?
	ls "$T/full" >"$T/left"
	check "full disk: exit 1" [ $rc -eq 1 ]
	check "full disk: one line per file that did not fit" \
		[ "$(grep -c "No space left on device" "$T/err")" -eq 2 ]
	check "full disk: the file that fit is reported" [ "$(cut -f1 "$T/out")" = "$T/full/pear.png" ]
	check "full disk: no partial or temporary file left" [ "$(cat "$T/left")" = "pear.png" ]
	# side by side: whichever fit, each image is reported or named once, and
	# only the reported ones are on the disk
	rm -f "$T/full"/*
	"$R" -j 3 -o "$T/full" -s 256 "$F/cat.png" "$F/photo.jpg" "$F/pear.png" >"$T/out" 2>"$T/err"
	rc=$?
	ls "$T/full" >"$T/left"
	cut -f1 "$T/out" | sed 's|.*/||' | sort >"$T/reported"
	check "full disk, 3 jobs: exit 1" [ $rc -eq 1 ]
	check "... each image reported or named once" \
		[ $(($(wc -l <"$T/out") + $(grep -c "No space left on device" "$T/err"))) -eq 3 ]
	check "... only the reported ones left" matches "$T/reported" "$T/left"
	umount "$T/full"
else
	echo "skip full disk (cannot mount a tmpfs here)"
fi

finish
