/* lora-train: train a LoRA adapter (or a whole small model) on text, from a
 * YAML config plus --key value overrides. The job is lib/train.c; this file
 * is options and signals. See lora-train(1). */
#include "config.h"             /* lora_config_load, lora_config_set, lora_config_key */
#include "train.h"              /* lora_train_run */
#include "util.h"               /* lora_die, lora_progname */

#include <getopt.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <unistd.h>

static volatile sig_atomic_t stop;
/* file scope, so they stay reachable when usage() exits */
static struct option *opts;
static const char **set_k, **set_v;

static void on_signal(int sig)
{
	(void)sig;
	stop = 1;
	static const char msg[] = "\nlora-train: stopping after this step and writing a checkpoint "
	                          "(signal again to kill)\n";
	ssize_t w = write(2, msg, sizeof msg - 1);
	(void)w;
}

static void usage(int status)
{
	fprintf(status ? stderr : stdout,
	        "usage: lora-train [-hn] [-c config] [--key value ...] [config]\n");
	if (status == 0)
		printf("Keys (see lora-train(1)) may be set in the config or as --key value.\n");
	exit(status);
}

int main(int argc, char **argv)
{
	lora_progname = "lora-train";
	int nk = lora_config_nkeys();
	opts = lora_xcalloc((size_t)nk + 5, sizeof *opts);
	int no = 0;
	opts[no++] = (struct option){"config", required_argument, NULL, 'c'};
	opts[no++] = (struct option){"dry-run", no_argument, NULL, 'n'};
	opts[no++] = (struct option){"dry_run", no_argument, NULL, 'n'};
	opts[no++] = (struct option){"help", no_argument, NULL, 'h'};
	for (int i = 0; i < nk; i++)
		opts[no++] = (struct option){lora_config_key(i), required_argument, NULL, 1000 + i};
	const char *cfgpath = NULL;
	int dry = 0, nset = 0;
	set_k = lora_xcalloc((size_t)argc, sizeof *set_k);
	set_v = lora_xcalloc((size_t)argc, sizeof *set_v);
	int ch;
	opterr = 0;
	while ((ch = getopt_long(argc, argv, ":c:hn", opts, NULL)) != -1) {
		switch (ch) {
		case 'c': cfgpath = optarg; break;
		case 'n': dry = 1; break;
		case 'h': usage(0); break;
		case ':':
			fprintf(stderr, "lora-train: option '%s' needs a value\n", argv[optind - 1]);
			usage(2);
			break;
		case '?': {
			const char *a = argv[optind - 1];
			if (!strncmp(a, "--", 2)) {
				char *k = lora_xstrdup(a + 2), *eq = strchr(k, '=');
				if (eq) *eq = 0;
				fprintf(stderr, "lora-train: unknown option '--%s' (did you mean '--%s'?)\n",
				        k, lora_config_nearest(k));
				free(k);
			} else {
				fprintf(stderr, "lora-train: unknown option '%s'\n", a);
			}
			usage(2);
			break;
		}
		default: {
			/* getopt_long takes any unambiguous prefix ('--learning_rat'); a key
			 * must be spelt out, as it must in a config file. */
			const char *key = lora_config_key(ch - 1000);
			const char *a = argv[optind - 1] == optarg ? argv[optind - 2] : argv[optind - 1];
			size_t n = strcspn(a + 2, "=");
			if (n != strlen(key) || strncmp(a + 2, key, n)) {
				fprintf(stderr, "lora-train: unknown option '--%.*s' (did you mean '--%s'?)\n",
				        (int)n, a + 2, key);
				usage(2);
			}
			set_k[nset] = key;
			set_v[nset++] = optarg;
		}
		}
	}
	if (optind < argc && !cfgpath)
		cfgpath = argv[optind++];
	if (optind < argc) {
		fprintf(stderr, "lora-train: unexpected argument '%s'\n", argv[optind]);
		usage(2);
	}
	if (!cfgpath && nset == 0)
		usage(2);

	lora_config c;
	lora_config_init(&c);
	if (cfgpath && !strcmp(cfgpath, "-")) {           /* the config on stdin */
		size_t n = 0, cap = 4096;
		char *buf = lora_xmalloc(cap);
		size_t k;
		while ((k = fread(buf + n, 1, cap - n, stdin)) > 0)
			if ((n += k) == cap)
				buf = lora_xrealloc(buf, cap *= 2);
		if (ferror(stdin))
			lora_die("cannot read standard input:");
		int rc = lora_config_load_string(&c, buf, n, "<stdin>");
		free(buf);
		if (rc < 0)
			lora_die("%s", lora_errmsg());
	} else if (cfgpath && lora_config_load(&c, cfgpath) < 0) {
		lora_die("%s", lora_errmsg());
	}
	for (int i = 0; i < nset; i++)
		if (lora_config_set(&c, set_k[i], set_v[i]) < 0)
			lora_die("%s", lora_errmsg());
	if (lora_config_resolve(&c) < 0)
		lora_die("%s", lora_errmsg());

	struct sigaction sa = {0};
	sa.sa_handler = on_signal;
	/* a second Ctrl-C ends the process at once; a system call the first
	 * one interrupts (a read from a pipe, a network file system) resumes
	 * instead of failing with EINTR */
	sa.sa_flags = SA_RESETHAND | SA_RESTART;
	sigemptyset(&sa.sa_mask);
	sigaction(SIGINT, &sa, NULL);
	sigaction(SIGTERM, &sa, NULL);

	lora_train_opts o = {.dry_run = dry, .stop = &stop, .progress_tty = -1};
	int rc = lora_train_run(&c, &o);
	lora_config_free(&c);
	free(opts);
	free(set_k);
	free(set_v);
	if (fflush(stdout) != 0 || ferror(stdout))
		lora_die("error writing to standard output:");
	return rc;
}
