# The two commands of the quick start: `make sim` and `make test`.
# Both create .venv and install what they need on first use.

PYTHON ?= python3
VENV   ?= .venv
BIN    := $(VENV)/bin
STAMP  := $(VENV)/.installed

.PHONY: sim test bench fpga fpga-bench regress formal simulator bytecode clean

# uv fetches and installs the wheels in parallel: about 20 s where pip takes 30-120 s here
# (the wheels are large: nextpnr, Yosys, z3). Plain pip if uv cannot be had or fails.
# Bytecode is compiled at install (uv does not by default): where PYTHONDONTWRITEBYTECODE is
# set, as on our development machine, every Python process would otherwise compile each
# module it imports (Amaranth, cocotb, wasmtime) from source, again and again.
UV := uv==0.13.9

$(STAMP): pyproject.toml
	$(PYTHON) -m venv $(VENV)
	( $(BIN)/pip install --quiet '$(UV)' && \
	  $(BIN)/uv pip install --quiet --compile-bytecode --python $(BIN)/python \
	    -e '.[test,fpga]' ) || \
	  $(BIN)/pip install --quiet -e '.[test,fpga]'
	touch $@

# Our own modules' bytecode, for the same reason (each simulator and tool run imports them).
bytecode: $(STAMP)
	@$(BIN)/python -m compileall -q -j 0 hdl sim tb

sim: $(STAMP) bytecode
	$(BIN)/ipiv sim

bench: $(STAMP)
	$(BIN)/ipiv bench

# The SymbiYosys proofs (also part of `make test` at their default depths).
formal: $(STAMP)
	$(BIN)/ipiv prove --bus both

# The long cocotb regression (random seeds, contention, 100k-IPI co-simulation).
regress: $(STAMP) simulator
	$(BIN)/ipiv regress

# FPGA builds with YoWASP (no system tools): both boards and the bare unit.
fpga: $(STAMP)
	$(BIN)/ipiv build --board icebreaker
	$(BIN)/ipiv build --board ulx3s-85f
	$(BIN)/ipiv build --synth-only --place

# The README's table of the bare unit: each memory port on ECP5 and iCE40, placed and routed
# with SEEDS nextpnr seeds (the median quoted); about 6 minutes for 5 seeds on this machine.
SEEDS ?= 5
fpga-bench: $(STAMP)
	$(BIN)/ipiv build --sweep --seeds $(SEEDS)

# Icarus Verilog from Debian/Ubuntu (the cocotb testbenches' default simulator) and LZ4 (FST
# waves from Verilator); installed with apt when missing.
simulator:
	@missing=""; \
	command -v iverilog >/dev/null 2>&1 || missing="$$missing iverilog"; \
	dpkg -s liblz4-dev >/dev/null 2>&1 || missing="$$missing liblz4-dev"; \
	if [ -n "$$missing" ]; then \
	  echo "Installing$$missing (apt)..."; \
	  SUDO=$$( [ "$$(id -u)" -eq 0 ] || echo sudo ); \
	  $$SUDO apt-get update -qq && \
	  $$SUDO env DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	fi
	@iverilog -V 2>/dev/null | head -n 1

# Both cores: longest tests first (tests/durations.json), idle workers steal from busy ones.
test: $(STAMP) simulator bytecode
	mkdir -p build
	$(BIN)/python -m pytest -n auto --dist worksteal --junitxml=build/test-results.xml

clean:
	rm -rf build
