# lora-* toolkit.
#
#   make              build every tool into bin/ (CUDA backend too when nvcc is found)
#   make check        install missing deps, build, run all tests under ASan+UBSan
#                     (and under TSan, and the CUDA tests on the emulator)
#   make demo         the README's tour on bundled data
#   make install PREFIX=/usr/local
#   make CUDA=0       force the CPU-only build
#   make fuzz FUZZ_SECONDS=600   run every fuzz target longer
#
# A tool is cmd/lora-X.c + man/lora-X.1 + tests/lora-X.sh; the binary, man and
# test lists are derived from the files in cmd/. Everything reusable is lib/*.c,
# archived into one static library; CUDA kernels are kernels/*.cu.

PREFIX  ?= /usr/local
MANDIR  ?= $(PREFIX)/share/man/man1
CC      ?= cc
CLANG   ?= clang
OPT     ?= -O2
CFLAGS  ?= $(OPT) -g
CFLAGS  += -std=c11 -D_GNU_SOURCE -Wall -Wextra -pthread -Ilib \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread
LDLIBS  += -ljansson -lyaml -lpng -ljpeg -ldeflate -lpcre2-8 -lutf8proc -llapacke \
           -lopenblas -lz -lm -lpthread

# ---- build flavours ---------------------------------------------------------
# O is the object directory, BINDIR where tools go. SAN=1 is the sanitizer
# build the tests use (CPU only: ASan does not mix with the CUDA runtime).
# SIM=1 is the CUDA backend on the CPU emulator (tests/cudasim/cudasim.h):
# kernels/*.cu become C++ run by fibers, under ASan+UBSan, so that the CUDA
# tests run where there is no GPU.
# nvcc contracts a*b+c into one rounding (FMA) by default; the emulated
# kernels do too where the CPU has FMA, so the tests meet the device's
# rounding, not one without contraction.
SIM_FMA ?= $(shell grep -qw fma /proc/cpuinfo 2>/dev/null && echo -mfma -ffp-contract=fast)
ifeq ($(SIM),1)
O       := build/sim
BINDIR  := build/sim/bin
SANFLAGS := -fno-omit-frame-pointer -fsanitize=address,undefined -fno-sanitize-recover=undefined
CFLAGS  := -O1 -g $(SANFLAGS) $(filter-out -O% -g,$(CFLAGS)) -DLORA_CUDA=1 -DLORA_CUDA_SIM=1
SIM_CXXFLAGS := -O2 -g -fPIC $(SANFLAGS) -DLORA_CUDA_SIM=1 -std=c++17 -Wall -Wextra -Wno-unknown-pragmas -Wno-missing-field-initializers \
           -Ilib -Ikernels -Itests/cudasim/include -include tests/cudasim/cudasim.h \
           -I/usr/include/x86_64-linux-gnu/openblas-pthread $(SIM_FMA)
LDFLAGS += -fsanitize=address,undefined
CUDA_LDLIBS := -lopenblas -lstdc++ -lm
CUDA    := 0
else ifeq ($(SAN),1)
O       := build/san
BINDIR  := build/san/bin
CFLAGS  := -O1 -g -fno-omit-frame-pointer -fsanitize=address,undefined \
           -fno-sanitize-recover=undefined $(filter-out -O% -g,$(CFLAGS))
LDFLAGS += -fsanitize=address,undefined
CUDA    := 0
else ifeq ($(TSAN),1)
# TSAN=1 is ThreadSanitizer, for the threads of the tools (tests/lora-tsan.sh)
# and of lib/ (the unit tests again, as tsan-test-*).
O       := build/tsan
BINDIR  := build/tsan/bin
CFLAGS  := -O1 -g -fsanitize=thread $(filter-out -O% -g,$(CFLAGS))
LDFLAGS += -fsanitize=thread
CUDA    := 0
else
O       := build/rel
BINDIR  := bin
endif

# ---- CUDA detection: the one place that decides ------------------------------
# CUDA=1 forces it on, CUDA=0 off; by default on when nvcc is on PATH or in
# /usr/local/cuda/bin. With it, kernels/*.cu are built and lib/ sees LORA_CUDA.
NVCC_FOUND := $(or $(shell command -v nvcc 2>/dev/null),$(wildcard /usr/local/cuda/bin/nvcc))
CUDA    ?= $(if $(NVCC_FOUND),1,0)
NVCC    ?= $(NVCC_FOUND)
CUDA_HOME ?= $(patsubst %/bin/nvcc,%,$(NVCC_FOUND))
# The GPUs the kernels are built for: machine code for each compute
# capability in CUDA_ARCHS (80 runs on every 8.x: A100, A10, RTX 30xx and
# 40xx, L4, L40; 90: H100, H200), plus PTX of the first one, which the
# driver of a newer GPU (Blackwell: 10.x, 12.x) compiles when it loads.
# The kernels need 8.0 or newer. A shorter list builds faster: make
# CUDA_ARCHS=89 for an RTX 4090 alone.
CUDA_ARCHS ?= 80 90
NVARCH  := $(foreach a,$(CUDA_ARCHS),-gencode arch=compute_$(a),code=sm_$(a)) \
           -gencode arch=compute_$(firstword $(CUDA_ARCHS)),code=compute_$(firstword $(CUDA_ARCHS))
NVFLAGS ?= -O3 -std=c++17 $(NVARCH) -Ilib -Xcompiler -Wall,-fPIC --expt-relaxed-constexpr \
           -DLORA_CUDA_ARCHS=$(subst $(eval) ,_,$(strip $(CUDA_ARCHS)))
ifeq ($(SIM),1)
# the emulated GPU runs the kernels "built for" CUDA_ARCHS too
SIM_CXXFLAGS += -DLORA_CUDA_ARCHS=$(subst $(eval) ,_,$(strip $(CUDA_ARCHS)))
endif
KERNEL_SRC := $(wildcard kernels/*.cu)
# The tools load the kernels at run time from $(BINDIR)/lora-cuda.so
# (lib/backend.c), so only it, the CUDA tests and the benchmarks link
# cuBLAS and the CUDA runtime (CUDA_LDLIBS); the tools export the lora_*
# functions the kernels call back (lora_err, lora_xrealloc, ...).
ifeq ($(CUDA),1)
CFLAGS  += -DLORA_CUDA=1 -I$(CUDA_HOME)/include
CUDA_LDLIBS := -L$(CUDA_HOME)/lib64 -Wl,-rpath,$(CUDA_HOME)/lib64 -lcublasLt -lcublas -lcudart \
           -lstdc++ -ldl -lrt -lm
KERNEL_OBJ := $(KERNEL_SRC:kernels/%.cu=$(O)/kernels/%.o)
endif
ifeq ($(SIM),1)
KERNEL_OBJ := $(KERNEL_SRC:kernels/%.cu=$(O)/kernels/%.o) $(O)/cudasim/cudasim.o
endif
ifneq ($(KERNEL_OBJ),)
CUDA_SO := $(BINDIR)/lora-cuda.so
TOOL_LDFLAGS := -Wl,--export-dynamic-symbol=lora_*
# The op table's headers, summed: lora-cuda.so exports the sum it was built
# with, and a tool refuses a library built against other headers.
BACKEND_ABI := $(firstword $(shell cat lib/backend.h lib/dtype.h | cksum))
CFLAGS  += -DLORA_BACKEND_ABI=$(BACKEND_ABI)u
NVFLAGS += -DLORA_BACKEND_ABI=$(BACKEND_ABI)u
SIM_CXXFLAGS += -DLORA_BACKEND_ABI=$(BACKEND_ABI)u
endif

# ---- sources ------------------------------------------------------------------
LIB_SRC  := $(wildcard lib/*.c)
LIB_OBJ  := $(LIB_SRC:lib/%.c=$(O)/lib/%.o)
LIB_A    := $(O)/liblora.a
BIN      := $(patsubst cmd/%.c,%,$(wildcard cmd/lora-*.c))
MAN      := $(BIN:%=man/%.1)
UNIT     := $(patsubst tests/%.c,%,$(filter-out tests/test-cuda-%,$(wildcard tests/test-*.c)))
# CUDA tests (tests/test-cuda-*.c) compare the CUDA backend with the CPU one;
# they are built in the release flavour (CUDA does not mix with ASan) and
# report themselves skipped where no GPU is present.
CUDA_TESTS := $(patsubst tests/%.c,%,$(wildcard tests/test-cuda-*.c))
FUZZ     := $(patsubst tests/fuzz/%.c,%,$(wildcard tests/fuzz/fuzz-*.c))
FUZZ_SECONDS ?= 10

all: $(BIN:%=$(BINDIR)/%) $(CUDA_SO)

$(O)/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -c -o $@ $<

ifeq ($(SIM),1)
SIM_DEPS := $(wildcard lib/*.h kernels/*.cuh tests/cudasim/*.h tests/cudasim/include/*.h)
$(O)/kernels/%.cc: kernels/%.cu tests/cudasim/cu2cc.pl
	@mkdir -p $(@D)
	perl tests/cudasim/cu2cc.pl $< >$@.tmp && mv $@.tmp $@

$(O)/kernels/%.o: $(O)/kernels/%.cc $(SIM_DEPS)
	$(CXX) $(SIM_CXXFLAGS) -c -o $@ $<

$(O)/cudasim/cudasim.o: tests/cudasim/cudasim.cc $(SIM_DEPS)
	@mkdir -p $(@D)
	$(CXX) $(SIM_CXXFLAGS) -c -o $@ $<
else
# A stamp named after CUDA_ARCHS: another list rebuilds the kernels.
ARCH_STAMP := $(O)/kernels/archs-$(subst $(eval) ,-,$(strip $(CUDA_ARCHS)))
$(ARCH_STAMP):
	@mkdir -p $(@D) && rm -f $(O)/kernels/archs-* && touch $@

$(O)/kernels/%.o: kernels/%.cu $(wildcard lib/*.h kernels/*.cuh) $(ARCH_STAMP)
	@mkdir -p $(@D)
	$(NVCC) $(NVFLAGS) -c -o $@ $<
endif

$(LIB_A): $(LIB_OBJ) $(KERNEL_OBJ)
	@rm -f $@
	ar rcs $@ $^

$(BINDIR)/%: cmd/%.c $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -o $@ $< $(LIB_A) $(LDFLAGS) $(TOOL_LDFLAGS) $(LDLIBS)

# The CUDA backend the tools load; its lora_* references are the tool's.
$(CUDA_SO): $(KERNEL_OBJ)
	@mkdir -p $(@D)
	$(CC) -shared -o $@.tmp $(KERNEL_OBJ) $(LDFLAGS) $(CUDA_LDLIBS) && mv $@.tmp $@

$(O)/tests/%: tests/%.c $(wildcard tests/*.h) $(LIB_A)
	@mkdir -p $(@D)
	$(CC) $(CFLAGS) -Itests -o $@ $< $(LIB_A) $(LDFLAGS) $(LDLIBS) $(CUDA_LDLIBS)

# ---- tests ----------------------------------------------------------------------
# check: the README's test command. Builds the release tools (and so compiles
# the CUDA backend when nvcc is here), then runs every unit test and tool test
# against the sanitizer build, then each fuzz target for FUZZ_SECONDS.
NPROC   := $(shell nproc 2>/dev/null || echo 2)
check: deps
	$(MAKE) -j$(NPROC) all cuda-tests
	$(MAKE) -j$(NPROC) SAN=1 all san-tests
	$(MAKE) -j$(NPROC) SIM=1 all cuda-tests
	$(MAKE) -j$(NPROC) TSAN=1 all san-tests
	$(MAKE) fuzz-run
	@sh tests/run.sh build/san

san-tests: $(UNIT:%=$(O)/tests/%)

cuda-tests: $(CUDA_TESTS:%=$(O)/tests/%)

# The CUDA tests and tool tests on the emulator only (a quick loop while
# working on kernels/).
sim-check:
	$(MAKE) -j$(NPROC) SIM=1 all cuda-tests
	build/sim/tests/test-cuda-ops
	build/sim/tests/test-cuda-llama
	BIN=build/sim/bin FIXTURES=tests/fixtures TMPDIR=$$(mktemp -d) sh tests/lora-train-cuda.sh

deps:
	@sh scripts/deps.sh

# ---- fuzzing (libFuzzer, clang) -------------------------------------------------
FUZZ_CFLAGS = -g -O1 -std=c11 -D_GNU_SOURCE -pthread -Ilib \
              -I/usr/include/x86_64-linux-gnu/openblas-pthread \
              -fsanitize=address,undefined
FUZZ_OBJ = $(LIB_SRC:lib/%.c=build/fuzz/lib/%.o)

build/fuzz/lib/%.o: lib/%.c $(wildcard lib/*.h)
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer-no-link -c -o $@ $<

build/fuzz/liblora.a: $(FUZZ_OBJ)
	@rm -f $@
	ar rcs $@ $^

build/fuzz/%: tests/fuzz/%.c build/fuzz/liblora.a
	@mkdir -p $(@D)
	$(CLANG) $(FUZZ_CFLAGS) -fsanitize=fuzzer -o $@ $< build/fuzz/liblora.a \
		$(filter-out -L% -lcu% -lstdc++,$(LDLIBS))

fuzz-build: $(FUZZ:%=build/fuzz/%)

# Each target runs on a scratch copy of its seed corpus tests/fuzz/corpus/NAME.
fuzz-run: fuzz-build
	@for f in $(FUZZ); do \
		n=$${f#fuzz-}; d=build/fuzz/corpus-$$n; rm -rf $$d; mkdir -p $$d; \
		[ -d tests/fuzz/corpus/$$n ] && cp tests/fuzz/corpus/$$n/* $$d/ 2>/dev/null; \
		echo "fuzz: $$f for $(FUZZ_SECONDS)s"; \
		build/fuzz/$$f -max_total_time=$(FUZZ_SECONDS) -rss_limit_mb=2048 \
			-artifact_prefix=build/fuzz/crash-$$n- $$d >build/fuzz/$$f.log 2>&1 \
			|| { tail -30 build/fuzz/$$f.log; echo "fuzz: $$f FAILED"; exit 1; }; \
		grep -E '^(#[0-9]+.*DONE|Done)' build/fuzz/$$f.log | tail -1; \
	done

fuzz: fuzz-run

# ---- the README's tour ------------------------------------------------------------
demo: deps all
	@sh examples/demo.sh

install: all
	mkdir -p $(DESTDIR)$(PREFIX)/bin $(DESTDIR)$(MANDIR)
	cp $(BIN:%=bin/%) $(DESTDIR)$(PREFIX)/bin/
	cp $(MAN) $(DESTDIR)$(MANDIR)/
	if [ -f bin/lora-cuda.so ]; then mkdir -p $(DESTDIR)$(PREFIX)/lib/lora && \
		cp bin/lora-cuda.so $(DESTDIR)$(PREFIX)/lib/lora/; fi

clean:
	rm -rf build bin

.PHONY: all check san-tests cuda-tests sim-check deps fuzz fuzz-build fuzz-run demo install clean
.SECONDARY:
