#!/bin/sh
# bench/inspect.sh: lora-inspect against Python safetensors + numpy doing the
# same job, in the same run, on the same files.
#
#   sh bench/inspect.sh            # files in ${BENCH_DIR:-/tmp/lora-bench}, made once
#
# Two files with the same 400 tensor names and header, 100 MB and 2 GB of F16
# data (generated once by the reference writer, not committed). Measured:
#   list   the listing (names, dtypes, shapes, metadata): lora-inspect vs
#          safe_open + get_slice; the same time for both sizes = header only
#   stats  min/max/mean/std/L2/NaN/Inf per tensor: lora-inspect --stats vs
#          safe_open + get_tensor + numpy
# Times are of the whole command (Python start-up and imports included, as a
# user sees it): the least wall-clock and the least CPU seconds of $REPS runs
# after one warm-up run, so the files are in the page cache for both sides.
set -e
cd "$(dirname "$0")/.."
D=${BENCH_DIR:-/tmp/lora-bench}
REPS=${REPS:-3}
X=${X:-bin/lora-inspect}
[ -x "$X" ] || { echo "bench: build first (make)" >&2; exit 1; }
mkdir -p "$D"

python3 - "$D" <<'EOF'
import os, sys
import numpy as np
from safetensors.numpy import save_file
d = sys.argv[1]
for name, per in (("small", 131072), ("big", 2684352)):   # F16 elements per tensor
    p = os.path.join(d, name + ".safetensors")
    if os.path.exists(p):
        continue
    rng = np.random.default_rng(1)
    base = rng.standard_normal(per, dtype=np.float32).astype(np.float16)
    t = {"model.layers.%d.w%d.weight" % (i // 8, i % 8): np.roll(base, i).reshape(-1, 64)
         for i in range(400)}
    save_file(t, p, metadata={"format": "pt", "note": "lora-inspect benchmark"})
    print("bench: wrote %s (%.0f MB)" % (p, os.path.getsize(p) / 1e6), file=sys.stderr)
EOF

cat >"$D/list.py" <<'EOF'
import sys
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    meta = f.metadata() or {}
    for k in f.keys():                     # file order is name order here
        s = f.get_slice(k)
        shape = s.get_shape()
        n = 1
        for x in shape:
            n *= x
        print("%s\t%s\t[%s]\t%d" % (k, s.get_dtype(), ",".join(map(str, shape)), n))
EOF
cat >"$D/stats.py" <<'EOF'
import sys
import numpy as np
from safetensors import safe_open
with safe_open(sys.argv[1], "np") as f:
    for k in f.keys():
        x = f.get_tensor(k).astype(np.float32).reshape(-1)
        nan = int(np.isnan(x).sum()); inf = int(np.isinf(x).sum())
        y = x[np.isfinite(x)] if nan or inf else x
        print("%s\t%.9g\t%.9g\t%.9g\t%.9g\t%.9g\t%d\t%d" % (k, y.min(), y.max(),
              y.mean(dtype=np.float64), y.std(dtype=np.float64),
              np.sqrt(np.dot(y.astype(np.float64), y)), nan, inf))
EOF

# "WALL CPU": the least wall-clock and the least CPU (user+sys) seconds over
# REPS runs of a command, after a warm-up run. CPU time is what to compare on
# a busy machine; wall time shows the threads.
# LOOP: runs per timing (the listing takes milliseconds, below the 10 ms
# resolution of time(1)); the figures are per run.
best() {
	"$@" >/dev/null 2>&1 || true
	i=0
	: >"$D/times"
	while [ $i -lt "$REPS" ]; do
		/usr/bin/time -f "%e %U %S" -o "$D/t1" sh -c '
			n=$1; shift; k=0
			while [ $k -lt $n ]; do "$@" >/dev/null 2>&1; k=$((k + 1)); done' - "$LOOP" "$@" || true
		cat "$D/t1" >>"$D/times"
		i=$((i + 1))
	done
	awk -v n="$LOOP" 'NR == 1 || $1 < w { w = $1 } NR == 1 || $2 + $3 < c { c = $2 + $3 }
		END { printf "%.5f %.5f\n", w / n, c / n }' "$D/times"
}

echo "# lora-inspect vs Python safetensors $(python3 -c 'import safetensors; print(safetensors.__version__)') + numpy $(python3 -c 'import numpy; print(numpy.__version__)')"
echo "# $(date -u +%Y-%m-%d), $(nproc) CPUs ($(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2 | sed 's/^ //')), LORA_THREADS=${LORA_THREADS:-$(nproc)}"
printf '%-6s %-6s %8s | %8s %8s %7s | %8s %8s %7s\n' job file size_MB lora_wall py_wall ratio lora_cpu py_cpu ratio
for job in list stats; do
	for f in small big; do
		p="$D/$f.safetensors"
		mb=$(du -m "$p" | cut -f1)
		if [ $job = list ]; then
			LOOP=20
			a=$(best "$X" "$p")
		else
			LOOP=1
			a=$(best "$X" -s "$p")
		fi
		b=$(best python3 "$D/$job.py" "$p")
		echo "$job $f $mb $a $b" | awk '{ printf "%-6s %-6s %8s | %8.4f %8.3f %6.0fx | %8.4f %8.3f %6.0fx\n",
			$1, $2, $3, $4, $6, $6 / ($4 > 0 ? $4 : 0.001), $5, $7, $7 / ($5 > 0 ? $5 : 0.001) }'
	done
done
# the two listings agree (the numbers are the same job)
"$X" "$D/small.safetensors" | grep -v '^#' | sort >"$D/a.txt"
python3 "$D/list.py" "$D/small.safetensors" | sort >"$D/b.txt"
cmp -s "$D/a.txt" "$D/b.txt" && echo "# listings identical" || echo "# LISTINGS DIFFER"
