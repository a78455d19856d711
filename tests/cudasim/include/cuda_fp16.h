/* cuda_fp16.h: the CPU emulator stands in for it (tests/cudasim/cudasim.h). */
#include "../cudasim.h"
