/* test-config.c: lib/config.c against PyYAML's reading of the same files
 * (tests/fixtures/config/NAME.expect.json, made by tests/gen/config.py), plus
 * round trips, overrides and error messages. */
#include "config.h"
#include "test.h"
#include "util.h"

#include <jansson.h>
#include <stdlib.h>
#include <string.h>

static const char *fixtures(void)
{
	const char *f = getenv("FIXTURES");
	return f ? f : "tests/fixtures";
}

/* Undo sb_yaml_string: plain or "..." with \\ \" \xNN escapes. */
static char *unquote(const char *s)
{
	size_t n = strlen(s);
	if (n < 2 || s[0] != '"')
		return lora_xstrdup(s);
	char *o = lora_xmalloc(n), *d = o;
	for (size_t i = 1; i + 1 < n; i++) {
		if (s[i] == '\\' && s[i + 1] == 'x') {
			*d++ = (char)strtol((char[]){s[i + 2], s[i + 3], 0}, NULL, 16);
			i += 3;
		} else if (s[i] == '\\') {
			*d++ = s[++i];
		} else {
			*d++ = s[i];
		}
	}
	*d = 0;
	return o;
}

/* Compare one key of c with PyYAML's value v. */
static void check_key(const char *file, const lora_config *c, const char *k, json_t *v)
{
	char descr[300];
	snprintf(descr, sizeof descr, "%s: %s", file, k);
	char *got = lora_config_get(c, k);
	test_cond(descr, got != NULL);
	if (!got)
		return;
	if (json_is_null(v)) {
		lora_config d;
		lora_config_init(&d);
		char *def = lora_config_get(&d, k);
		test_cond(descr, !strcmp(got, def));
		free(def);
		lora_config_free(&d);
	} else if (json_is_boolean(v)) {
		test_cond(descr, !strcmp(got, json_is_true(v) ? "true" : "false"));
	} else if (json_is_number(v)) {
		test_close(descr, strtod(got, NULL), json_number_value(v), 0, 0);
	} else if (json_is_string(v)) {
		char *u = unquote(got);
		char *end;
		double x = strtod(json_string_value(v), &end);
		if (!*end && end != json_string_value(v) && strcmp(k, "base_model"))
			test_close(descr, strtod(u, NULL), x, 0, 0);     /* "1e-4" */
		else if (!strcmp(k, "target_modules"))
			test_cond(descr, !strcmp(u, "[all-linear]") || !strcmp(u, "[\"all-linear\"]") ||
			                 (c->target_modules.n == 1 &&
			                  !strcmp(c->target_modules.v[0], json_string_value(v))));
		else {
			if (strcmp(u, json_string_value(v)))
				printf("      got '%s' want '%s'\n", u, json_string_value(v));
			test_cond(descr, !strcmp(u, json_string_value(v)));
		}
		free(u);
	} else if (json_is_array(v)) {
		test_cond(descr, c->target_modules.n == (int)json_array_size(v));
		for (int i = 0; i < c->target_modules.n && i < (int)json_array_size(v); i++)
			test_cond(descr, !strcmp(c->target_modules.v[i],
			                         json_string_value(json_array_get(v, (size_t)i))));
	} else {
		test_cond(descr, 0);
	}
	free(got);
}

static void check_fixture(const char *name, const char *ext)
{
	char path[512], expect[512];
	snprintf(path, sizeof path, "%s/config/%s.%s", fixtures(), name, ext);
	snprintf(expect, sizeof expect, "%s/config/%s.expect.json", fixtures(), name);
	lora_config c;
	lora_config_init(&c);
	int rc = lora_config_load(&c, path);
	if (rc < 0)
		printf("      %s\n", lora_errmsg());
	test_cond(name, rc == 0);
	json_error_t je;
	json_t *j = json_load_file(expect, 0, &je);
	test_cond("expect file loads", j != NULL);
	const char *k;
	json_t *v;
	int nkeys = 0;
	json_object_foreach(j, k, v) {
		check_key(name, &c, k, v);
		nkeys++;
	}
	test_cond("fixture has keys", nkeys >= 8);
	json_decref(j);

	/* round trip: the resolved YAML reads back to the same config */
	test_cond("resolve", lora_config_resolve(&c) == 0);
	char *y1 = lora_config_to_yaml(&c);
	lora_config d;
	lora_config_init(&d);
	rc = lora_config_load_string(&d, y1, strlen(y1), "resolved");
	if (rc < 0)
		printf("      %s\n%s", lora_errmsg(), y1);
	test_cond("resolved config reloads", rc == 0);
	char *y2 = lora_config_to_yaml(&d);
	test_cond("round trip is exact", !strcmp(y1, y2));
	int lines = 0;
	for (char *p = y1; *p; p++)
		lines += *p == '\n';
	test_cond("one line per key (+2 comment lines)", lines == lora_config_nkeys() + 2);
	free(y1);
	free(y2);
	lora_config_free(&c);
	lora_config_free(&d);
}

static void expect_error(const char *yaml, const char *needle)
{
	lora_config c;
	lora_config_init(&c);
	int rc = lora_config_load_string(&c, yaml, strlen(yaml), "t.yaml");
	int ok = rc < 0 && strstr(lora_errmsg(), needle);
	if (!ok)
		printf("      yaml %s: rc %d msg '%s' (want '%s')\n", yaml, rc, lora_errmsg(), needle);
	test_cond(needle, ok);
	lora_config_free(&c);
}

int main(void)
{
	check_fixture("block", "yaml");
	check_fixture("flow", "yaml");
	check_fixture("plain", "json");
	check_fixture("quoting", "yaml");

	/* defaults, DESIGN.md §3 */
	lora_config c;
	lora_config_init(&c);
	test_cond("rank 8", c.lora_rank == 8);
	test_close("alpha 16", c.lora_alpha, 16, 0, 0);
	test_cond("batch 4", c.batch_size == 4);
	test_cond("epochs 10", c.epochs == 10);
	test_close("lr 2e-4", c.learning_rate, 2e-4, 0, 0);
	test_cond("cosine", !strcmp(c.scheduler, "cosine"));
	test_close("wd", c.weight_decay, 0.01, 0, 0);
	test_close("beta2", c.adam_beta2, 0.999, 0, 0);
	test_close("eps", c.adam_epsilon, 1e-8, 0, 0);
	test_cond("seed 42", c.seed == 42);
	test_cond("save 100/3", c.save_steps == 100 && c.save_total_limit == 3);
	test_cond("lora mode", !strcmp(c.train_mode, "lora"));
	test_cond("device auto", !strcmp(c.device, "auto"));
	test_cond("max_seq_length 512", c.max_seq_length == 512);
	test_cond("resolve needs base_model",
	          lora_config_resolve(&c) < 0 && strstr(lora_errmsg(), "base_model"));

	/* overrides */
	test_cond("set rank", lora_config_set(&c, "lora_rank", "16") == 0 && c.lora_rank == 16);
	test_cond("set lr", lora_config_set(&c, "learning_rate", "1e-4") == 0 &&
	                    c.learning_rate == 1e-4);
	test_cond("set list", lora_config_set(&c, "target_modules", "q_proj, k_proj,o_proj") == 0 &&
	                      c.target_modules.n == 3 && !strcmp(c.target_modules.v[2], "o_proj"));
	test_cond("set flow list", lora_config_set(&c, "target_modules", "[up_proj]") == 0 &&
	                           c.target_modules.n == 1 && !strcmp(c.target_modules.v[0], "up_proj"));
	test_cond("set bool", lora_config_set(&c, "use_rslora", "true") == 0 && c.use_rslora);
	test_cond("enum case", lora_config_set(&c, "optimizer", "adamw") == 0 &&
	                       !strcmp(c.optimizer, "AdamW"));
	test_cond("set null resets", lora_config_set(&c, "lora_rank", "null") == 0 && c.lora_rank == 8);
	test_cond("unknown override",
	          lora_config_set(&c, "lora_rnak", "4") < 0 &&
	          strstr(lora_errmsg(), "unknown key 'lora_rnak' (did you mean 'lora_rank'?)"));
	test_cond("range", lora_config_set(&c, "lora_rank", "0") < 0 &&
	                   strstr(lora_errmsg(), "lora_rank: 0 is out of range"));
	test_cond("not int", lora_config_set(&c, "batch_size", "2.5") < 0 &&
	                     strstr(lora_errmsg(), "not an integer"));
	test_cond("int as 1e3", lora_config_set(&c, "max_steps", "1e3") == 0 && c.max_steps == 1000);
	test_cond("device", lora_config_set(&c, "device", "cuda:1") == 0);
	c.base_model = lora_xstrdup("m");
	c.train_data_dir = lora_xstrdup("d");
	c.output_dir = lora_xstrdup("runs/abc/");
	test_cond("resolve", lora_config_resolve(&c) == 0);
	test_cond("output_name from dir", !strcmp(c.output_name, "abc"));
	test_cond("logging_dir", !strcmp(c.logging_dir, "runs/abc//logs"));
	test_cond("bad device", lora_config_set(&c, "device", "tpu") == 0 &&
	                        lora_config_resolve(&c) < 0 && strstr(lora_errmsg(), "device"));
	lora_config_free(&c);
	lora_config_init(&c);
	c.base_model = lora_xstrdup("m");
	c.train_data_dir = lora_xstrdup("d");
	c.output_dir = lora_xstrdup("o");
	test_cond("text default targets", lora_config_resolve(&c) == 0 && c.target_modules.n == 2 &&
	                                  !strcmp(c.target_modules.v[1], "v_proj"));
	lora_config_free(&c);

	/* errors name the file, line and key */
	expect_error("lora_rank: 8\nleraning_rate: 1\n",
	             "'t.yaml': line 2: unknown key 'leraning_rate' (did you mean 'learning_rate'?)");
	expect_error("batchsize: 2", "did you mean 'batch_size'?");
	expect_error("lora_rank: [1, 2]", "lora_rank: expected a single value, not a list");
	expect_error("lora_rank: {a: 1}", "expected a value, not a mapping");
	expect_error("lora_rank: -1", "lora_rank: -1 is out of range [1, 65536]");
	expect_error("learning_rate: 0", "learning_rate: 0 is out of range (0, 1000]");
	expect_error("learning_rate: abc", "learning_rate: 'abc' is not a number");
	expect_error("scheduler: cosine_with_restarts",
	             "scheduler: 'cosine_with_restarts' is not one of: cosine, constant, linear");
	expect_error("use_rslora: maybe", "not a boolean");
	expect_error("- a\n- b\n", "expected a mapping");
	expect_error("a: [1, 2", "line ");
	expect_error("lora_rank: 2\n---\nlora_rank: 3\n", "more than one YAML document");
	expect_error("target_modules: []", "empty list");
	expect_error("base_model: ''", "base_model: empty value");
	expect_error("lora_dropout: 1", "lora_dropout: 1 is out of range");

	/* empty file and null document: all defaults */
	lora_config_init(&c);
	test_cond("empty file", lora_config_load_string(&c, "", 0, "e") == 0 && c.lora_rank == 8);
	test_cond("comment only", lora_config_load_string(&c, "# x\n", 4, "e") == 0);
	test_cond("missing file", lora_config_load(&c, "/nonexistent/x.yaml") < 0 &&
	                          strstr(lora_errmsg(), "/nonexistent/x.yaml"));
	lora_config_free(&c);
	test_cond("nearest", !strcmp(lora_config_nearest("epoch"), "epochs"));

	/* the shipped example configs load and resolve */
	static const char *const ex[] = {"text-lora-tinyllama.yaml", "text-lora-qa-jsonl.yaml",
	                                 "text-full-small.yaml", "demo/base.yaml", "demo/lora.yaml"};
	for (size_t i = 0; i < sizeof ex / sizeof ex[0]; i++) {
		char *p = lora_xasprintf("%s/../../examples/%s", fixtures(), ex[i]);
		lora_config_init(&c);
		int rc = lora_config_load(&c, p);
		if (rc == 0)
			rc = lora_config_resolve(&c);
		if (rc < 0)
			printf("      %s\n", lora_errmsg());
		test_cond(ex[i], rc == 0);
		lora_config_free(&c);
		free(p);
	}
	return test_report();
}
