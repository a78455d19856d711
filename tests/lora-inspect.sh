#!/bin/sh
# lora-inspect against the reference fixtures (tests/gen/gen_safetensors.py,
# tests/gen/gen_bad.py). POSIX sh; $BIN, $FIXTURES, $TMPDIR from tests/run.sh.
BIN=${BIN:-bin}
FIXTURES=${FIXTURES:-tests/fixtures}
TMPDIR=${TMPDIR:-/tmp}
X="$BIN/lora-inspect"
F="$FIXTURES/safetensors"
T="$TMPDIR"
. "$(dirname "$0")/lib.sh"
tab=$(printf '\t')

# ---- usage matches the man page's SYNOPSIS ---------------------------------------
. "$(dirname "$0")/synopsis.sh"
holds "--help prints the man page synopsis" 'synopsis_matches "$X" "$(dirname "$0")/../man/lora-inspect.1"'
holds "the synopsis has both forms" '[ "$(man_synopsis "$(dirname "$0")/../man/lora-inspect.1" lora-inspect | wc -l)" -eq 2 ]'

# ---- listing: the reference reader's names, dtypes, shapes, counts ----------------
for c in dtypes edge kohya peft; do
	f=$c.safetensors
	[ $c = peft ] && f=peft/adapter_model.safetensors
	"$X" "$F/$f" >"$T/out" 2>"$T/err"
	holds "$c: exit 0" '[ $? -eq 0 ]'
	grep -v '^#' "$T/out" >"$T/table"
	holds "$c: listing matches the reference" 'cmp -s "$T/table" "$F/listing/$c.tsv"'
	holds "$c: tensor count" 'grep -qx "# tensors: $(wc -l <"$F/listing/$c.tsv" | tr -d " ")" "$T/out"'
	holds "$c: param total" '[ "$(awk -F"\t" "{s+=\$4} END {print s+0}" "$F/listing/$c.tsv")" = "$(sed -n "s/^# params: \([0-9]*\).*/\1/p" "$T/out")" ]'
	holds "$c: nothing on stderr" '[ ! -s "$T/err" ]'
done
"$X" "$F/llama/model.safetensors.index.json" >"$T/out"
holds "sharded: one listing in shard order" 'grep -v "^#" "$T/out" | cmp -s - "$F/listing/llama-sharded.tsv"'
holds "sharded: shard count" 'grep -q "^# file: .*(6 shards)" "$T/out"'
"$X" <"$F/kohya.safetensors" | grep -v '^#' >"$T/stdin"
holds "reads standard input" 'cmp -s "$T/stdin" "$F/listing/kohya.tsv"'
"$X" "$F/empty.safetensors" >"$T/out"
holds "empty file: no tensors" 'grep -qx "# tensors: 0" "$T/out" && [ "$(grep -vc "^#" "$T/out")" -eq 0 ]'

# ---- kind of file --------------------------------------------------------------------
kind() { "$X" "$F/$1" | sed -n 's/^# kind: //p'; }
holds "kind: kohya" '[ "$(kind kohya.safetensors)" = "kohya/A1111 SD LoRA" ]'
holds "kind: peft" '[ "$(kind peft/adapter_model.safetensors)" = "PEFT LoRA" ]'
holds "kind: diffusers" '[ "$(kind diffusers/pytorch_lora_weights.safetensors)" = "diffusers LoRA" ]'
holds "kind: sd15" '[ "$(kind sd15.safetensors)" = "SD 1.5 checkpoint" ]'
holds "kind: llama" '[ "$(kind llama1/model.safetensors)" = "HF LLaMA checkpoint" ]'
holds "kind: unknown" '[ "$(kind dtypes.safetensors)" = "unknown" ]'

# ---- LoRA modules: rank, alpha, scale as the references say (modules.tsv) ----------
for f in kohya.safetensors peft/adapter_model.safetensors diffusers/pytorch_lora_weights.safetensors; do
	"$X" "$F/$f" >"$T/out"
	# "# module NAME PART r=R alpha=A scale=S ..." -> NAME R A S (PEFT: by path)
	awk -F'\t' -v f="$f" '$1 == f { print $2, $3, $4, $5 }' "$F/modules.tsv" | sort >"$T/want"
	awk -F'\t' '$1 == "# module" { n = $2; sub(/^base_model\.model\./, "", n);
		sub(/^r=/, "", $4); sub(/^alpha=/, "", $5); sub(/^scale=/, "", $6);
		print n, $4, $5, $6 }' "$T/out" | sort >"$T/got"
	holds "$f: modules with rank, alpha and scale" '[ -s "$T/want" ] && cmp -s "$T/want" "$T/got"'
	cmp -s "$T/want" "$T/got" || diff "$T/want" "$T/got" | head -5
done
"$X" "$F/kohya.safetensors" >"$T/out"
holds "kohya: module count by part" 'grep -qx "# modules: 23 (unet 11, text_encoder 12)" "$T/out"'
holds "kohya: common rank first" 'grep -qx "# rank: 4 (22 modules), 2 (1 module)" "$T/out"'
holds "kohya: base model from metadata" 'grep -q "^# base model: v1-5-pruned-emaonly.safetensors (sd_v1" "$T/out"'
holds "kohya: training from metadata" 'grep -q "^# training: epochs 10, steps 500, images 50" "$T/out"'
holds "kohya: layers" 'grep -qx "# layers: unet: down_blocks 0, mid_block, up_blocks 3; text_encoder: layers 0,11" "$T/out"'
holds "kohya: LDM base name of a module" 'grep -q "${tab}model.diffusion_model.output_blocks.11.1.proj_out$" "$T/out"'
"$X" "$F/peft/adapter_model.safetensors" >"$T/out"
holds "peft: alpha_pattern from adapter_config.json" 'grep -qx "# alpha: 8 (4 modules), 4 (2 modules) \[from adapter_config.json\]" "$T/out"'
holds "peft: base model from adapter_config.json" 'grep -qx "# base model: tiny-random-llama" "$T/out"'

# ---- --meta ----------------------------------------------------------------------------
"$X" --meta "$F/meta.safetensors" >"$T/meta"
holds "--meta: key<TAB>value in header order, escaped" 'cmp -s "$T/meta" "$F/listing/meta.tsv"'
"$X" -m "$F/edge.safetensors" >"$T/meta"
holds "--meta: none" '[ ! -s "$T/meta" ]'

# ---- --filter ----------------------------------------------------------------------------
"$X" --filter '*.alpha' "$F/kohya.safetensors" | grep -v '^#' >"$T/f"
grep '\.alpha	' "$F/listing/kohya.tsv" >"$T/want"
holds "--filter: glob over names" '[ -s "$T/f" ] && cmp -s "$T/f" "$T/want"'
holds "--filter: summary says so" '"$X" -f "*.alpha" "$F/kohya.safetensors" | grep -q "^# tensors: 23 of 69 match"'
holds "--filter: no match" '[ "$("$X" -f "nothing*" "$F/kohya.safetensors" | grep -vc "^#")" -eq 0 ]'

# ---- --json ------------------------------------------------------------------------------
if command -v jq >/dev/null 2>&1; then
	"$X" --json "$F/kohya.safetensors" >"$T/j"
	holds "--json: valid, one document" 'jq -e . "$T/j" >/dev/null'
	holds "--json: tensors as listed" '[ "$(jq -r ".tensors[] | [.name, .dtype, \"[\" + (.shape | map(tostring) | join(\",\")) + \"]\", (.params | tostring)] | @tsv" "$T/j" | cmp - "$F/listing/kohya.tsv" && echo y)" = y ]'
	holds "--json: kind and modules" '[ "$(jq -r ".kind, .lora.module_count, .lora.rank, .metadata.ss_network_dim" "$T/j" | tr "\n" " ")" = "kohya 23 4 4 " ]'
	"$X" -j "$F/kohya.safetensors" "$F/sd15.safetensors" >"$T/j"
	holds "--json: several files make an array" '[ "$(jq -r "length, .[1].kind" "$T/j" | tr "\n" " ")" = "2 sd15 " ]'
	"$X" -j -s -n "$F/nonfinite.safetensors" >"$T/j"
	holds "--json --stats" '[ "$(jq -r ".nonfinite_tensors, (.tensors[] | select(.name == \"bad_f32\") | .stats.nan)" "$T/j" | tr "\n" " ")" = "2 2 " ]'
	"$X" -j -d "$F/kohya.safetensors" "$F/kohya-b.safetensors" >"$T/j"
	holds "--json --diff" '[ "$(jq -r ".summary.only_a, .summary.only_b, .summary.changed, .summary.differ" "$T/j" | tr "\n" " ")" = "1 1 2 1 " ]'
else
	echo "note: jq not found, --json output not checked"
fi

# ---- --stats against numpy (stats.tsv), relative tolerance 1e-6 ----------------------
for f in kohya.safetensors sd15.safetensors; do
	"$X" --stats "$F/$f" >"$T/s" 2>"$T/err"
	holds "$f --stats: exit 0" '[ $? -eq 0 ] && [ ! -s "$T/err" ]'
	awk -F'\t' -v f="$f" 'NR == FNR { if ($1 == f) want[$2] = $0; next }
		/^#/ { next }
		{ n++; split(want[$1], w, "\t")
		  if (!($1 in want)) { print "no reference for " $1; bad++; next }
		  for (k = 5; k <= 11; k++) {
			g = $k + 0; e = w[k - 2] + 0; d = g - e; if (d < 0) d = -d
			a = e < 0 ? -e : e
			if (d > 1e-6 * a + 1e-7) { print $1, k, $k, w[k - 2]; bad++ }
		  } }
		END { exit !(n > 0 && bad == 0) }' "$F/stats.tsv" "$T/s" >"$T/d"
	holds "$f --stats: min max mean std l2 nan inf as numpy" '[ $? -eq 0 ]'
	head -3 "$T/d"
done
"$X" -s "$F/nonfinite.safetensors" >"$T/s" 2>"$T/err"
rc=$?
holds "--stats: NaN/Inf exit 1" '[ $rc -eq 1 ]'
holds "--stats: NaN/Inf one line on stderr" '[ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "nonfinite.safetensors.*2 tensors hold NaN or Inf" "$T/err"'
awk -F'\t' 'NR == FNR { if ($1 == "nonfinite.safetensors") { nan[$2] = $8; inf[$2] = $9 } next }
	!/^#/ { if ($10 != nan[$1] || $11 != inf[$1]) bad++; n++ }
	END { exit !(n == 3 && !bad) }' "$F/stats.tsv" "$T/s"
holds "--stats: NaN and Inf counts as numpy" '[ $? -eq 0 ]'
"$X" -s --allow-nonfinite "$F/nonfinite.safetensors" >/dev/null 2>"$T/err"
holds "--allow-nonfinite: exit 0" '[ $? -eq 0 ] && [ ! -s "$T/err" ]'
LORA_THREADS=1 "$X" -s "$F/kohya.safetensors" >"$T/s1"
LORA_THREADS=3 "$X" -s "$F/kohya.safetensors" >"$T/s3"
holds "--stats: same result on 1 and 3 threads" 'cmp -s "$T/s1" "$T/s3"'

# ---- --diff against numpy (diff.tsv) --------------------------------------------------
"$X" --diff "$F/kohya.safetensors" "$F/kohya-b.safetensors" >"$T/d"
holds "--diff: exit 0" '[ $? -eq 0 ]'
holds "--diff: only in a" 'grep -q "^only-a${tab}lora_te_text_model_encoder_layers_11_mlp_fc2.alpha${tab}" "$T/d"'
holds "--diff: only in b" 'grep -q "^only-b${tab}lora_te_text_model_encoder_layers_11_mlp_fc2.scale${tab}" "$T/d"'
holds "--diff: changed dtype" 'grep -q "^changed${tab}lora_te_text_model_encoder_layers_0_mlp_fc1.lora_down.weight${tab}F16 \[4,8\]${tab}F32 \[4,8\]" "$T/d"'
holds "--diff: changed shape" 'grep -q "^changed${tab}lora_unet_mid_block_attentions_0_transformer_blocks_0_attn1_to_q.lora_down.weight${tab}F16 \[4,16\]${tab}F16 \[2,16\]${tab}-$" "$T/d"'
awk -F'\t' 'NR == FNR { want[$1] = $2; nw++; next }
	/^#/ || $1 ~ /^meta/ { next }
	$1 == "same" || $1 == "differ" || ($1 == "changed" && $5 != "-") {
		n++; d = $5 - want[$2]; if (d < 0) d = -d
		if (!($2 in want) || d > 1e-6 * want[$2] + 1e-9) { print "diff", $2, $5, want[$2]; bad++ } }
	END { exit !(n == nw && n > 60 && !bad) }' "$F/diff.tsv" "$T/d"
holds "--diff: largest |a-b| per tensor as numpy" '[ $? -eq 0 ]'
"$X" -d "$F/kohya.safetensors" "$F/kohya.safetensors" >"$T/d"
holds "--diff: a file against itself" 'grep -q "^# only in a: 0, only in b: 0, changed dtype/shape: 0, different values: 0, identical: 69" "$T/d"'
"$X" -d "$F/meta.safetensors" "$F/example.safetensors" >"$T/d"
holds "--diff: metadata keys" '[ "$(grep -c "^meta-only-a" "$T/d")" -eq 4 ]'

# ---- usage errors exit 2, bad files exit 1 with one line ---------------------------------
"$X" --no-such-option "$F/kohya.safetensors" >/dev/null 2>&1
holds "unknown option: exit 2" '[ $? -eq 2 ]'
"$X" -d "$F/kohya.safetensors" >/dev/null 2>&1
holds "--diff with one file: exit 2" '[ $? -eq 2 ]'
"$X" -n "$F/kohya.safetensors" >/dev/null 2>&1
holds "--allow-nonfinite without --stats: exit 2" '[ $? -eq 2 ]'
"$X" "$T/no-such.safetensors" >/dev/null 2>"$T/err"
holds "missing file: exit 1, one line naming it" '[ $? -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "no-such.safetensors.*No such file" "$T/err"'
"$X" "$F/kohya.safetensors" "$T/no-such.safetensors" "$F/sd15.safetensors" >"$T/out" 2>/dev/null
holds "a bad file among good ones: exit 1, the others listed" '[ $? -eq 1 ] && [ "$(grep -c "^# kind" "$T/out")" -eq 2 ]'

n=0
for b in "$F"/bad/*; do
	case $b in */ok-shard.safetensors|*/REFERENCE.tsv) continue ;; esac
	n=$((n + 1))
	"$X" "$b" >"$T/out" 2>"$T/err"
	rc=$?
	name=$(basename "$b")
	if [ $rc -eq 1 ] && [ "$(wc -l <"$T/err")" -eq 1 ] && grep -q "^lora-inspect: " "$T/err" &&
	   [ ! -s "$T/out" ]; then
		ok "bad/$name: exit 1, one line, no output"
	else
		bad "bad/$name: exit $rc, stderr:"; head -5 "$T/err"
	fi
done
holds "the malformed corpus has 40+ files" '[ $n -ge 40 ]'
holds "ok-shard.safetensors itself is fine" '"$X" "$F/bad/ok-shard.safetensors" >/dev/null'

# ---- a folder stands for the file in it --------------------------------------------
"$X" "$F/peft" >"$T/dir.out" 2>"$T/dir.err"
"$X" "$F/peft/adapter_model.safetensors" >"$T/file.out"
holds "folder: a PEFT adapter folder lists its adapter" 'sed "/^# file:/d" "$T/dir.out" | cmp -s - "$(sed "/^# file:/d" "$T/file.out" >"$T/file2.out"; echo "$T/file2.out")"'
holds "folder: the adapter_config.json beside it is read" 'grep -q "\[from adapter_config.json\]" "$T/dir.out"'
"$X" "$F/llama" >"$T/dir.out" 2>"$T/dir.err"
holds "folder: a sharded model folder uses its index" 'grep -q "^# file: .*(6 shards)" "$T/dir.out"'
mkdir -p "$T/emptydir"
"$X" "$T/emptydir" >"$T/dir.out" 2>"$T/dir.err"
rc=$?
holds "folder: one without a model is an error naming it" '[ $rc -eq 1 ] && ! [ -s "$T/dir.out" ] && [ "$(wc -l <"$T/dir.err")" -eq 1 ] && grep -q "emptydir.: a folder without" "$T/dir.err"'

finish
