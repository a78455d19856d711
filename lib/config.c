/* config.c: see config.h. One table of keys drives parsing, checks, defaults
 * and the resolved YAML. */
#include "config.h"
#include "util.h"

#include <ctype.h>
#include <errno.h>
#include <limits.h>
#include <math.h>
#include <stddef.h>
#include <stdlib.h>
#include <string.h>
#include <yaml.h>               /* yaml_parser_*, yaml_document_* */

/* ---- the key table ---------------------------------------------------------- */

enum { T_STR, T_ENUM, T_INT, T_FLOAT, T_BOOL, T_LIST };

typedef struct {
	const char *name;
	int type;
	size_t off;
	const char *def;            /* text form of the default; NULL: unset */
	double lo, hi;              /* numbers: inclusive range */
	int lo_open;                /* floats: lo itself not allowed */
	const char *const *choices; /* T_ENUM (NULL-terminated) */
} key;

static const char *const task_types[] = {"text-generation", "image", NULL};
static const char *const optimizers[] = {"AdamW", NULL};
static const char *const schedulers[] = {"cosine", "constant", "linear", NULL};
static const char *const train_modes[] = {"lora", "full", NULL};
static const char *const precisions[] = {"fp32", "bf16", "fp16", NULL};

#define O(f) offsetof(lora_config, f)
#define BIG 1e18
static const key keys[] = {
	{"task_type", T_ENUM, O(task_type), NULL, 0, 0, 0, task_types},
	{"base_model", T_STR, O(base_model), NULL, 0, 0, 0, NULL},
	{"train_data_dir", T_STR, O(train_data_dir), NULL, 0, 0, 0, NULL},
	{"metadata_path", T_STR, O(metadata_path), NULL, 0, 0, 0, NULL},
	{"tokenizer", T_STR, O(tokenizer), NULL, 0, 0, 0, NULL},
	{"lora_rank", T_INT, O(lora_rank), "8", 1, 65536, 0, NULL},
	{"lora_alpha", T_FLOAT, O(lora_alpha), "16", 0, BIG, 1, NULL},
	{"lora_dropout", T_FLOAT, O(lora_dropout), "0.0", 0, 0.999999, 0, NULL},
	{"target_modules", T_LIST, O(target_modules), NULL, 0, 0, 0, NULL},
	{"batch_size", T_INT, O(batch_size), "4", 1, 1 << 20, 0, NULL},
	{"gradient_accumulation_steps", T_INT, O(gradient_accumulation_steps), "1", 1, 1 << 20, 0, NULL},
	{"epochs", T_INT, O(epochs), "10", 1, 1e9, 0, NULL},
	{"max_steps", T_INT, O(max_steps), "0", 0, 1e15, 0, NULL},
	{"learning_rate", T_FLOAT, O(learning_rate), "2e-4", 0, 1e3, 1, NULL},
	{"optimizer", T_ENUM, O(optimizer), "AdamW", 0, 0, 0, optimizers},
	{"scheduler", T_ENUM, O(scheduler), "cosine", 0, 0, 0, schedulers},
	{"warmup_steps", T_INT, O(warmup_steps), "0", 0, 1e15, 0, NULL},
	{"weight_decay", T_FLOAT, O(weight_decay), "0.01", 0, 1e3, 0, NULL},
	{"adam_beta1", T_FLOAT, O(adam_beta1), "0.9", 0, 0.999999999, 0, NULL},
	{"adam_beta2", T_FLOAT, O(adam_beta2), "0.999", 0, 0.999999999, 0, NULL},
	{"adam_epsilon", T_FLOAT, O(adam_epsilon), "1e-8", 0, 1, 1, NULL},
	{"max_grad_norm", T_FLOAT, O(max_grad_norm), "1.0", 0, BIG, 0, NULL},
	{"use_rslora", T_BOOL, O(use_rslora), "false", 0, 0, 0, NULL},
	{"gradient_checkpointing", T_BOOL, O(gradient_checkpointing), "false", 0, 0, 0, NULL},
	{"val_split", T_FLOAT, O(val_split), "0.0", 0, 0.99, 0, NULL},
	{"eval_steps", T_INT, O(eval_steps), "100", 1, 1e15, 0, NULL},
	{"train_mode", T_ENUM, O(train_mode), "lora", 0, 0, 0, train_modes},
	{"resolution", T_INT, O(resolution), "512", 8, 16384, 0, NULL},
	{"enable_bucket", T_BOOL, O(enable_bucket), "false", 0, 0, 0, NULL},
	{"max_seq_length", T_INT, O(max_seq_length), "512", 2, 1 << 24, 0, NULL},
	{"seed", T_INT, O(seed), "42", 0, 9007199254740992.0, 0, NULL},
	{"output_dir", T_STR, O(output_dir), NULL, 0, 0, 0, NULL},
	{"output_name", T_STR, O(output_name), NULL, 0, 0, 0, NULL},
	{"save_steps", T_INT, O(save_steps), "100", 0, 1e15, 0, NULL},
	{"save_total_limit", T_INT, O(save_total_limit), "3", 0, 1e9, 0, NULL},
	{"logging_dir", T_STR, O(logging_dir), NULL, 0, 0, 0, NULL},
	{"logging_steps", T_INT, O(logging_steps), "10", 1, 1e15, 0, NULL},
	{"resume", T_STR, O(resume), NULL, 0, 0, 0, NULL},
	{"init_lora", T_STR, O(init_lora), NULL, 0, 0, 0, NULL},
	{"device", T_STR, O(device), "auto", 0, 0, 0, NULL},
	{"precision", T_ENUM, O(precision), NULL, 0, 0, 0, precisions},
};
#define NKEYS ((int)(sizeof keys / sizeof keys[0]))

int lora_config_nkeys(void) { return NKEYS; }
const char *lora_config_key(int i) { return i >= 0 && i < NKEYS ? keys[i].name : NULL; }

static const key *find_key(const char *name)
{
	for (int i = 0; i < NKEYS; i++)
		if (!strcmp(keys[i].name, name))
			return &keys[i];
	return NULL;
}

/* ---- edit distance for "did you mean" ------------------------------------------ */

static int levenshtein(const char *a, const char *b)
{
	size_t la = strlen(a), lb = strlen(b);
	if (la > 256 || lb > 256)
		return INT_MAX / 2;
	int row[257];
	for (size_t j = 0; j <= lb; j++)
		row[j] = (int)j;
	for (size_t i = 1; i <= la; i++) {
		int diag = row[0];
		row[0] = (int)i;
		for (size_t j = 1; j <= lb; j++) {
			int up = row[j];
			int cost = tolower((unsigned char)a[i - 1]) != tolower((unsigned char)b[j - 1]);
			int v = diag + cost;
			if (row[j] + 1 < v) v = row[j] + 1;
			if (row[j - 1] + 1 < v) v = row[j - 1] + 1;
			row[j] = v;
			diag = up;
		}
	}
	return row[lb];
}

const char *lora_config_nearest(const char *s)
{
	const char *best = keys[0].name;
	int bd = INT_MAX;
	for (int i = 0; i < NKEYS; i++) {
		int d = levenshtein(s, keys[i].name);
		if (d < bd) {
			bd = d;
			best = keys[i].name;
		}
	}
	return best;
}

/* ---- values ------------------------------------------------------------------ */

static void list_free(lora_strlist *l)
{
	for (int i = 0; i < l->n; i++)
		free(l->v[i]);
	free(l->v);
	l->n = 0;
	l->v = NULL;
}

static void list_add(lora_strlist *l, const char *s, size_t n)
{
	l->v = lora_xrealloc(l->v, (size_t)(l->n + 1) * sizeof *l->v);
	char *d = lora_xmalloc(n + 1);
	memcpy(d, s, n);
	d[n] = 0;
	l->v[l->n++] = d;
}

static int is_null_text(const char *s)
{
	return !s || !*s || !strcmp(s, "~") || !strcmp(s, "null") || !strcmp(s, "Null") ||
	       !strcmp(s, "NULL");
}

/* Reset key k of c to its default. */
static void set_default(lora_config *c, const key *k);

/* Set key k from a scalar's text. where: "'f.yaml': line 3: " prefix for
 * messages. Strings are taken verbatim (quoted or not). */
static int set_scalar(lora_config *c, const key *k, const char *s, const char *where)
{
	void *p = (char *)c + k->off;
	if (is_null_text(s)) {
		set_default(c, k);
		return 0;
	}
	switch (k->type) {
	case T_STR:
		free(*(char **)p);
		*(char **)p = lora_xstrdup(s);
		return 0;
	case T_ENUM:
		for (int i = 0; k->choices[i]; i++)
			if (!strcasecmp(s, k->choices[i])) {
				free(*(char **)p);
				*(char **)p = lora_xstrdup(k->choices[i]);
				return 0;
			}
		{
			char buf[256] = "";
			for (int i = 0; k->choices[i]; i++) {
				strncat(buf, i ? ", " : "", sizeof buf - strlen(buf) - 1);
				strncat(buf, k->choices[i], sizeof buf - strlen(buf) - 1);
			}
			return lora_err("%s%s: '%.100s' is not one of: %s", where, k->name, s, buf);
		}
	case T_INT: {
		char *end;
		errno = 0;
		double v;
		long long iv = strtoll(s, &end, 10);
		if (*end == '.' || *end == 'e' || *end == 'E') {   /* "1e3", "100.0" */
			v = strtod(s, &end);
			if (*end || !isfinite(v) || v != floor(v))
				return lora_err("%s%s: '%.100s' is not an integer", where, k->name, s);
			if (v < k->lo || v > k->hi)    /* before the cast: 1e400 is no long long */
				return lora_err("%s%s: %.100s is out of range [%.0f, %.0f]", where, k->name,
				                s, k->lo, k->hi);
			iv = (long long)v;
		} else if (end == s || *end || errno)
			return lora_err("%s%s: '%.100s' is not an integer", where, k->name, s);
		v = (double)iv;
		if (v < k->lo || v > k->hi)
			return lora_err("%s%s: %lld is out of range [%.0f, %.0f]", where, k->name, iv, k->lo, k->hi);
		*(long *)p = (long)iv;
		return 0;
	}
	case T_FLOAT: {
		char *end;
		errno = 0;
		double v = strtod(s, &end);
		if (end == s || *end || errno || !isfinite(v))
			return lora_err("%s%s: '%.100s' is not a number", where, k->name, s);
		if (v < k->lo || v > k->hi || (k->lo_open && v == k->lo)) {
			if (k->hi >= BIG)
				return lora_err("%s%s: %g must be %s %g", where, k->name, v,
				                k->lo_open ? ">" : ">=", k->lo);
			return lora_err("%s%s: %g is out of range %s%g, %g]", where, k->name, v,
			                k->lo_open ? "(" : "[", k->lo, k->hi);
		}
		*(double *)p = v;
		return 0;
	}
	case T_BOOL: {
		static const char *const t[] = {"true", "yes", "on", "1", NULL};
		static const char *const f[] = {"false", "no", "off", "0", NULL};
		for (int i = 0; t[i]; i++)
			if (!strcasecmp(s, t[i])) {
				*(int *)p = 1;
				return 0;
			}
		for (int i = 0; f[i]; i++)
			if (!strcasecmp(s, f[i])) {
				*(int *)p = 0;
				return 0;
			}
		return lora_err("%s%s: '%.100s' is not a boolean (true or false)", where, k->name, s);
	}
	case T_LIST: {
		/* command-line form: "a,b,c" or "[a, b]"; a YAML scalar: one item
		 * (or "all-linear") */
		lora_strlist *l = p;
		list_free(l);
		const char *q = s, *e = s + strlen(s);
		if (*q == '[' && e > q && e[-1] == ']') {
			q++;
			e--;
		}
		while (q < e) {
			while (q < e && (*q == ' ' || *q == ',')) q++;
			const char *b = q;
			while (q < e && *q != ',') q++;
			const char *t = q;
			while (t > b && t[-1] == ' ') t--;
			if (t > b) {
				if ((*b == '"' || *b == '\'') && t - b >= 2 && t[-1] == *b) {
					b++;
					t--;
				}
				list_add(l, b, (size_t)(t - b));
			}
		}
		if (!l->n)
			return lora_err("%s%s: empty list", where, k->name);
		return 0;
	}
	}
	LORA_ASSERT(0);
	return -1;
}

static void set_default(lora_config *c, const key *k)
{
	void *p = (char *)c + k->off;
	switch (k->type) {
	case T_STR:
	case T_ENUM:
		free(*(char **)p);
		*(char **)p = k->def ? lora_xstrdup(k->def) : NULL;
		break;
	case T_LIST:
		list_free(p);
		break;
	default:
		LORA_ASSERT(k->def);
		LORA_ASSERT(set_scalar(c, k, k->def, "") == 0);
	}
}

void lora_config_init(lora_config *c)
{
	memset(c, 0, sizeof *c);
	for (int i = 0; i < NKEYS; i++)
		set_default(c, &keys[i]);
}

void lora_config_free(lora_config *c)
{
	if (!c)
		return;
	for (int i = 0; i < NKEYS; i++) {
		void *p = (char *)c + keys[i].off;
		if (keys[i].type == T_STR || keys[i].type == T_ENUM)
			free(*(char **)p);
		else if (keys[i].type == T_LIST)
			list_free(p);
	}
	memset(c, 0, sizeof *c);
}

static int unknown_key(const char *where, const char *name)
{
	return lora_err("%sunknown key '%.100s' (did you mean '%s'?)", where, name,
	                lora_config_nearest(name));
}

int lora_config_set(lora_config *c, const char *name, const char *val)
{
	const key *k = find_key(name);
	if (!k)
		return unknown_key("", name);
	return set_scalar(c, k, val, "--");
}

/* ---- YAML ------------------------------------------------------------------------ */

static int load_doc(lora_config *c, yaml_document_t *doc, const char *name)
{
	char where[512];
	yaml_node_t *root = yaml_document_get_root_node(doc);
	if (!root)
		return 0;                                   /* empty file: all defaults */
	if (root->type == YAML_SCALAR_NODE && is_null_text((char *)root->data.scalar.value))
		return 0;
	if (root->type != YAML_MAPPING_NODE)
		return lora_err("'%s': line %lu: expected a mapping of key: value", name,
		                (unsigned long)root->start_mark.line + 1);
	for (yaml_node_pair_t *pr = root->data.mapping.pairs.start;
	     pr < root->data.mapping.pairs.top; pr++) {
		yaml_node_t *kn = yaml_document_get_node(doc, pr->key);
		yaml_node_t *vn = yaml_document_get_node(doc, pr->value);
		if (!kn || !vn)
			return lora_err("'%s': malformed mapping", name);
		snprintf(where, sizeof where, "'%s': line %lu: ", name,
		         (unsigned long)kn->start_mark.line + 1);
		if (kn->type != YAML_SCALAR_NODE)
			return lora_err("%skeys must be plain names", where);
		const char *kname = (const char *)kn->data.scalar.value;
		const key *k = find_key(kname);
		if (!k)
			return unknown_key(where, kname);
		/* a key given twice: PyYAML keeps the last, so do we */
		if (vn->type == YAML_SCALAR_NODE) {
			const char *s = (const char *)vn->data.scalar.value;
			/* a quoted empty string or "null" is a string, not null */
			int quoted = vn->data.scalar.style == YAML_SINGLE_QUOTED_SCALAR_STYLE ||
			             vn->data.scalar.style == YAML_DOUBLE_QUOTED_SCALAR_STYLE;
			if (quoted && is_null_text(s) && (k->type == T_STR || k->type == T_LIST))
				return lora_err("%s%s: empty value", where, k->name);
			if (k->type == T_LIST && !is_null_text(s)) {
				lora_strlist *l = (lora_strlist *)((char *)c + k->off);
				list_free(l);
				list_add(l, s, strlen(s));
				continue;
			}
			if (set_scalar(c, k, s, where) < 0)
				return -1;
		} else if (vn->type == YAML_SEQUENCE_NODE) {
			if (k->type != T_LIST)
				return lora_err("%s%s: expected a single value, not a list", where, k->name);
			lora_strlist *l = (lora_strlist *)((char *)c + k->off);
			list_free(l);
			for (yaml_node_item_t *it = vn->data.sequence.items.start;
			     it < vn->data.sequence.items.top; it++) {
				yaml_node_t *in = yaml_document_get_node(doc, *it);
				if (!in || in->type != YAML_SCALAR_NODE || !in->data.scalar.length)
					return lora_err("%s%s: list items must be names", where, k->name);
				list_add(l, (char *)in->data.scalar.value, in->data.scalar.length);
			}
			if (!l->n)
				return lora_err("%s%s: empty list", where, k->name);
		} else {
			return lora_err("%s%s: expected a value, not a mapping", where, k->name);
		}
	}
	return 0;
}

int lora_config_load_string(lora_config *c, const char *buf, size_t len, const char *name)
{
	yaml_parser_t parser;
	yaml_document_t doc;
	if (!yaml_parser_initialize(&parser))
		return lora_err("'%s': cannot initialise the YAML parser", name);
	yaml_parser_set_input_string(&parser, (const unsigned char *)buf, len);
	if (!yaml_parser_load(&parser, &doc)) {
		int rc = lora_err("'%s': line %lu: %s%s%s", name,
		                  (unsigned long)parser.problem_mark.line + 1,
		                  parser.problem ? parser.problem : "invalid YAML",
		                  parser.context ? " " : "", parser.context ? parser.context : "");
		yaml_parser_delete(&parser);
		return rc;
	}
	int rc = load_doc(c, &doc, name);
	/* a second document is an error: the config is one mapping */
	yaml_document_t doc2;
	if (rc == 0) {
		if (!yaml_parser_load(&parser, &doc2)) {
			rc = lora_err("'%s': line %lu: %s", name,
			              (unsigned long)parser.problem_mark.line + 1,
			              parser.problem ? parser.problem : "invalid YAML");
		} else {
			if (yaml_document_get_root_node(&doc2))
				rc = lora_err("'%s': more than one YAML document", name);
			yaml_document_delete(&doc2);
		}
	}
	yaml_document_delete(&doc);
	yaml_parser_delete(&parser);
	return rc;
}

int lora_config_load(lora_config *c, const char *path)
{
	size_t len;
	char *buf = lora_read_file(path, &len);
	if (!buf)
		return -1;
	int rc = lora_config_load_string(c, buf, len, path);
	free(buf);
	return rc;
}

/* ---- resolve -------------------------------------------------------------------- */

int lora_config_resolve(lora_config *c)
{
	if (!c->base_model)
		return lora_err("base_model is required (an HF model folder or a .safetensors file)");
	if (!c->train_data_dir)
		return lora_err("train_data_dir is required (a folder of .txt, .jsonl or .ids files)");
	if (!c->output_dir)
		return lora_err("output_dir is required");
	if (c->device && strcmp(c->device, "auto") && strcmp(c->device, "cpu") &&
	    strcmp(c->device, "cuda")) {
		long n;
		if (strncmp(c->device, "cuda:", 5) || lora_parse_long(c->device + 5, 0, 1023, &n) < 0)
			return lora_err("device: '%s' is not one of: auto, cpu, cuda, cuda:N", c->device);
	}
	if (c->resume && !*c->resume)
		return lora_err("resume: empty value (auto or a checkpoint folder)");
	if (!c->output_name) {
		const char *s = c->output_dir;
		size_t n = strlen(s);
		while (n > 1 && s[n - 1] == '/') n--;
		size_t b = n;
		while (b > 0 && s[b - 1] != '/') b--;
		if (n - b == 0 || (n - b == 1 && s[b] == '.') || (n - b == 2 && !strncmp(s + b, "..", 2)))
			c->output_name = lora_xstrdup("adapter");
		else
			c->output_name = lora_xasprintf("%.*s", (int)(n - b), s + b);
	}
	if (!c->logging_dir)
		c->logging_dir = lora_xasprintf("%s/logs", c->output_dir);
	if (!c->target_modules.n && (!c->task_type || !strcmp(c->task_type, "text-generation"))) {
		list_add(&c->target_modules, "q_proj", 6);
		list_add(&c->target_modules, "v_proj", 6);
	}
	if (c->warmup_steps < 0)
		return lora_err("warmup_steps: must be >= 0");
	return 0;
}

/* ---- writing ----------------------------------------------------------------------- */

typedef struct {
	char *s;
	size_t n, cap;
} sbuf;

static void sb_add(sbuf *b, const char *s, size_t n)
{
	if (b->n + n + 1 > b->cap) {
		b->cap = (b->n + n + 1) * 2;
		b->s = lora_xrealloc(b->s, b->cap);
	}
	memcpy(b->s + b->n, s, n);
	b->n += n;
	b->s[b->n] = 0;
}

static void sb_str(sbuf *b, const char *s) { sb_add(b, s, strlen(s)); }

/* A string as a YAML scalar: plain when that cannot be misread (no special
 * characters, not a number/bool/null), else double-quoted with JSON escapes,
 * which YAML's double-quoted style reads the same. */
static void sb_yaml_string(sbuf *b, const char *s)
{
	int plain = *s && (isalpha((unsigned char)*s) || *s == '/' || *s == '_' || *s == '.');
	for (const char *p = s; *p && plain; p++)
		if (!isalnum((unsigned char)*p) && !strchr("_-./+", *p))
			plain = 0;
	static const char *const reserved[] = {"true", "false", "yes", "no", "on", "off", "y",
	                                       "n", "null", "nan", "inf", NULL};
	for (int i = 0; plain && reserved[i]; i++)
		if (!strcasecmp(s, reserved[i]) || (s[0] == '.' && !strcasecmp(s + 1, reserved[i])))
			plain = 0;
	if (plain) {
		sb_str(b, s);
		return;
	}
	sb_add(b, "\"", 1);
	for (const unsigned char *p = (const unsigned char *)s; *p; p++) {
		char e[8];
		if (*p == '"' || *p == '\\') {
			e[0] = '\\';
			e[1] = (char)*p;
			sb_add(b, e, 2);
		} else if (p[0] == 0xc2 && p[1] == 0x85) {
			sb_add(b, "\\N", 2);  /* NEL: YAML would read it as a line break */
			p++;
		} else if (p[0] == 0xe2 && p[1] == 0x80 && (p[2] == 0xa8 || p[2] == 0xa9)) {
			sb_add(b, p[2] == 0xa8 ? "\\L" : "\\P", 2);   /* LS, PS: likewise */
			p += 2;
		} else if (p[0] == 0xef && p[1] == 0xbb && p[2] == 0xbf) {
			sb_add(b, "\\uFEFF", 6);  /* a BOM inside a scalar */
			p += 2;
		} else if (*p < 0x20 || *p == 0x7f) {
			snprintf(e, sizeof e, "\\x%02x", *p);
			sb_add(b, e, 4);
		} else {
			sb_add(b, (const char *)p, 1);
		}
	}
	sb_add(b, "\"", 1);
}

/* Shortest text that reads back as the same double, in a form YAML 1.1
 * (PyYAML) also resolves as a float: it always has a '.'. */
static void sb_float(sbuf *b, double v)
{
	char buf[64];
	for (int prec = 1; prec <= 17; prec++) {
		snprintf(buf, sizeof buf, "%.*g", prec, v);
		if (strtod(buf, NULL) == v)
			break;
	}
	char out[72];
	char *e = strchr(buf, 'e');
	if (!strchr(buf, '.')) {
		if (e)
			snprintf(out, sizeof out, "%.*s.0%s", (int)(e - buf), buf, e);
		else
			snprintf(out, sizeof out, "%s.0", buf);
	} else {
		snprintf(out, sizeof out, "%s", buf);
	}
	sb_str(b, out);
}

static void sb_value(sbuf *b, const lora_config *c, const key *k)
{
	const void *p = (const char *)c + k->off;
	char num[64];
	switch (k->type) {
	case T_STR:
	case T_ENUM: {
		const char *s = *(char *const *)p;
		if (s)
			sb_yaml_string(b, s);
		else
			sb_str(b, "null");
		break;
	}
	case T_INT:
		snprintf(num, sizeof num, "%ld", *(const long *)p);
		sb_str(b, num);
		break;
	case T_FLOAT:
		sb_float(b, *(const double *)p);
		break;
	case T_BOOL:
		sb_str(b, *(const int *)p ? "true" : "false");
		break;
	case T_LIST: {
		const lora_strlist *l = p;
		if (!l->n) {
			sb_str(b, "null");
			break;
		}
		sb_str(b, "[");
		for (int j = 0; j < l->n; j++) {
			if (j)
				sb_str(b, ", ");
			sb_yaml_string(b, l->v[j]);
		}
		sb_str(b, "]");
		break;
	}
	}
}

char *lora_config_get(const lora_config *c, const char *name)
{
	const key *k = find_key(name);
	if (!k) {
		unknown_key("", name);
		return NULL;
	}
	sbuf b = {0};
	sb_value(&b, c, k);
	return b.s;
}

char *lora_config_to_yaml(const lora_config *c)
{
	sbuf b = {0};
	sb_str(&b, "# lora-train resolved config: every key, defaults filled in.\n"
	           "# Rerun with: lora-train --config config.yaml\n");
	for (int i = 0; i < NKEYS; i++) {
		sb_str(&b, keys[i].name);
		sb_str(&b, ": ");
		sb_value(&b, c, &keys[i]);
		sb_str(&b, "\n");
	}
	return b.s;
}

int lora_config_write(const lora_config *c, const char *path)
{
	char *s = lora_config_to_yaml(c);
	lora_afile f;
	if (lora_afile_open(&f, path) < 0) {
		free(s);
		return -1;
	}
	size_t n = strlen(s);
	if (fwrite(s, 1, n, f.fp) != n) {
		lora_afile_abort(&f);
		free(s);
		return lora_err("cannot write '%s':", path);
	}
	free(s);
	return lora_afile_commit(&f);
}
