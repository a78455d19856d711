#!/bin/sh
# Benchmark lora-resize against Pillow and ImageMagick doing the same job on
# the same files in the same run: decode, EXIF orientation, alpha over white,
# short side to SIZE with Lanczos, centre crop, PNG encode (zlib level 6).
#
# Usage: bench/resize.sh [SET ...]      SET: stamps | photos (default both)
#   stamps: tuxpaint-stamps-default drawings (PNG, short side >= 128), size 256
#   photos: the real photographs in scikit-image's wheel (skimage/data: JPEG
#           and PNG, 0.2-2 MP), each under 20 names, size 256
# Needs: bin/lora-resize (make), python3 with Pillow, ImageMagick's convert
# (Debian packages tuxpaint-stamps-default, imagemagick); pip downloads the
# scikit-image wheel once into bench/cache/ (not installed).
# Threads: 1, then every core ($LORA_THREADS or nproc). Wall time depends on
# what else the machine runs; CPU time (user+sys, children included) is the
# per-core cost, and its ratio is the figure to quote on a shared machine.
set -e
cd "$(dirname "$0")/.."
R=$PWD/bin/lora-resize
[ -x "$R" ] || { echo "bench: build first (make)" >&2; exit 1; }
CONVERT=/usr/bin/convert
[ -x "$CONVERT" ] || { echo "bench: install imagemagick" >&2; exit 1; }
NP=${LORA_THREADS:-$(nproc)}
W=$(mktemp -d)
trap 'rm -rf "$W"' EXIT

# The same job in Pillow: one process per core, like a real Pillow script.
cat >"$W/pil.py" <<'EOF'
import sys
from multiprocessing import Pool
from PIL import Image, ImageOps

SIZE = int(sys.argv[1]); OUT = sys.argv[2]; NP = int(sys.argv[3])

def one(a):
    i, path = a
    im = ImageOps.exif_transpose(Image.open(path))
    if im.mode in ("RGBA", "LA", "PA") or "transparency" in im.info:
        im = im.convert("RGBA")
        im = Image.alpha_composite(Image.new("RGBA", im.size, (255, 255, 255, 255)), im)
    im = im.convert("RGB")
    w, h = im.size
    s = min(w, h)
    dw = SIZE if w == s else int(w * SIZE / s + 0.5)
    dh = SIZE if h == s else int(h * SIZE / s + 0.5)
    x0, y0 = (dw - SIZE) // 2, (dh - SIZE) // 2
    im = im.resize((dw, dh), Image.LANCZOS).crop((x0, y0, x0 + SIZE, y0 + SIZE))
    im.save("%s/%d.png" % (OUT, i), compress_level=6)

files = list(enumerate(l.rstrip("\n") for l in sys.stdin))
if NP == 1:
    for a in files:
        one(a)
else:
    with Pool(NP) as p:
        p.map(one, files, chunksize=4)
EOF

t() { # t command...: prints "wall_seconds cpu_seconds" (cpu: user+sys of all children)
	rm -rf "$W/out"; mkdir -p "$W/out"
	/usr/bin/time -f "%e %U %S" -o "$W/time" "$@" >/dev/null
	awk '{ print $1, $2 + $3 }' "$W/time"
}

run_set() { # run_set NAME SIZE LISTFILE
	set_name=$1; size=$2; list=$3
	n=$(wc -l <"$list")
	echo
	echo "set $set_name: $n images, ${size}x$size, $(du -chL $(cat "$list") | tail -1 | cut -f1) of input"
	printf '%-12s %7s %8s %8s %10s %8s %11s %11s\n' tool threads wall-s img/s "vs Pillow" cpu-s img/cpu-s "vs Pillow"
	for th in 1 $NP; do
		p=$(t sh -c "python3 '$W/pil.py' $size '$W/out' $th <'$list'")
		m=$(t sh -c "MAGICK_THREAD_LIMIT=1 xargs -d '\n' -P $th -n 1 sh -c \
			'$CONVERT \"\$1\" -auto-orient -background white -alpha remove -alpha off \
			-filter Lanczos -resize ${size}x${size}^ -gravity center -extent ${size}x${size} \
			-define png:compression-level=6 \"$W/out/\$(basename \"\$1\")\"' _ <'$list'")
		l=$(t sh -c "'$R' -j $th -s $size --min-size 0 -o '$W/out' <'$list'")
		rows="Pillow $p|ImageMagick $m|lora-resize $l"
		if [ "$set_name" = photos ]; then   # JPEG DCT shrinking, approximate
			d=$(t sh -c "'$R' -j $th -s $size --min-size 0 --jpeg-draft -o '$W/out' <'$list'")
			rows="$rows|--jpeg-draft $d"
		fi
		set -- $p; pw=$1; pc=$2
		IFS='|'; set -- $rows; unset IFS
		for row in "$@"; do
			set -- $row
			printf '%-12s %7d %8.2f %8.1f %9.2fx %8.2f %11.1f %10.2fx\n' "$1" "$th" "$2" \
				"$(echo "$n / $2" | bc -l)" "$(echo "$pw / $2" | bc -l)" "$3" \
				"$(echo "$n / $3" | bc -l)" "$(echo "$pc / $3" | bc -l)"
		done
	done
}

sets=${*:-stamps photos}
for s in $sets; do
	case $s in
	stamps)
		d=/usr/share/tuxpaint/stamps
		[ -d $d ] || { echo "bench: apt-get install tuxpaint-stamps-default" >&2; continue; }
		find $d -name '*.png' | sort | python3 -c "
import sys
from PIL import Image
for l in sys.stdin:
    p = l.strip()
    if min(Image.open(p).size) >= 128: print(p)" >"$W/stamps.txt"
		run_set stamps 256 "$W/stamps.txt" ;;
	photos)
		c=bench/cache
		if [ ! -d $c/skimage/data ]; then
			mkdir -p $c
			python3 -m pip download -q --no-deps scikit-image -d $c >&2
			(cd $c && python3 -m zipfile -e scikit_image-*.whl x && mv x/skimage . && rm -rf x)
		fi
		mkdir -p "$W/photos"
		for f in astronaut.png chelsea.png coffee.png hubble_deep_field.jpg \
			motorcycle_left.png retina.jpg rocket.jpg ihc.png; do
			for k in $(seq 1 20); do
				ln -s "$PWD/$c/skimage/data/$f" "$W/photos/$k-$f"
			done
		done
		ls "$W"/photos/* >"$W/photos.txt"
		run_set photos 256 "$W/photos.txt" ;;
	*) echo "bench: unknown set $s" >&2; exit 2 ;;
	esac
done
echo
echo "machine: $(nproc) cores, $(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //'); $(date -u +%Y-%m-%d)"
