/* fuzz-loraconv: arbitrary module names through every lib/loraconv mapping.
 * Nothing may crash or leak; a name that maps must map back: kohya ->
 * canonical -> kohya -> canonical is stable, and a UNet path that has an LDM
 * name gets the same path back from it. */
#include "loraconv.h"
#include "util.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

static void check_kohya(const char *s)
{
	char *c = lora_conv_from_kohya(s);
	if (!c)
		return;
	char *k = lora_conv_to_kohya(c);
	if (!k)
		abort();
	char *c2 = lora_conv_from_kohya(k);
	if (!c2 || strcmp(c, c2))
		abort();
	char *w = lora_conv_base_weight(c);   /* none for SDXL's text_encoder_2 */
	if (!w && strncmp(c, "text_encoder_2.", 15))
		abort();
	char *p = lora_conv_to_peft(c);
	const char *dot = strchr(c, '.');
	char comp[64];
	snprintf(comp, sizeof comp, "%.*s", (int)(dot - c), c);
	char *q = lora_conv_from_peft(p, comp);
	if (strcmp(q, c))
		abort();
	free(c);
	free(k);
	free(c2);
	free(w);
	free(p);
	free(q);
}

static void check_unet(const char *s)
{
	char *l = lora_conv_unet_to_ldm(s);
	if (l) {
		char *d = lora_conv_unet_from_ldm(l);
		if (!d || strcmp(d, s))
			abort();
		free(d);
	}
	char *d = lora_conv_unet_from_ldm(s);
	if (d) {
		char *l2 = lora_conv_unet_to_ldm(d);
		if (!l2)
			abort();
		free(l2);
	}
	free(l);
	free(d);
}

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	char *s = lora_xmalloc(size + 16);
	memcpy(s, data, size);
	s[size] = 0;
	check_kohya(s);
	check_unet(s);
	/* the same bytes as the tail of each kohya prefix */
	static const char *pre[] = {"lora_unet_", "lora_te_", "lora_te2_"};
	for (int i = 0; i < 3; i++) {
		char *k = lora_xasprintf("%s%s", pre[i], s);
		check_kohya(k);
		free(k);
	}
	lora_arch a = lora_conv_arch(s);
	(void)a;
	char *w = lora_conv_base_weight(s);
	free(w);
	free(s);
	return 0;
}
