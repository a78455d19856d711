/* fuzz-config.c: lora_config_load_string on arbitrary bytes must return 0
 * or -1 with a message, never crash or leak; what loads must round-trip. */
#include "config.h"

#include <stdint.h>
#include <stdlib.h>
#include <string.h>

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
	lora_config c;
	lora_config_init(&c);
	if (lora_config_load_string(&c, (const char *)data, size, "fuzz") == 0) {
		char *y = lora_config_to_yaml(&c);
		lora_config d;
		lora_config_init(&d);
		if (lora_config_load_string(&d, y, strlen(y), "again") != 0)
			abort();
		char *y2 = lora_config_to_yaml(&d);
		if (strcmp(y, y2))
			abort();
		free(y);
		free(y2);
		lora_config_free(&d);
	}
	lora_config_free(&c);
	return 0;
}
