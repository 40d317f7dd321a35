# oci2bin — build, test, bench. `make` on a fresh Debian machine installs what it needs.
SHELL := /bin/bash
CARGO ?= cargo
MUSL := x86_64-unknown-linux-musl
TARGET_DIR := $(abspath $(or $(CARGO_TARGET_DIR),target))
OCI2BIN := $(TARGET_DIR)/release/oci2bin
PREFIX ?= /usr/local
# Debian packages the build, the tests and the benchmarks use (see ../shared/TESTING.md).
APT_PACKAGES := musl-tools busybox-static skopeo umoci mmdebstrap podman runc uidmap zstd \
  docker-registry apache2-utils openssl slirp4netns passt hyperfine bubblewrap charliecloud \
  python3 util-linux tar redis-tools openssh-client rpm qemu-system-x86
# The loader: static musl when the target can be added, else static glibc (crt-static). Computed
# when make reads this file, so it reflects the toolchain as it was then: see ENTRY_POINTS below.
LOADER_TRIPLE := $(shell rustup target list --installed 2>/dev/null | grep -qx $(MUSL) && echo $(MUSL) || echo x86_64-unknown-linux-gnu)
LOADER := $(TARGET_DIR)/$(LOADER_TRIPLE)/loader/loader
# The VM runtime (`--vm`): a second static binary from the loader crate, carried by files built
# with --vm; no size limit of its own (the small loader's is what every file pays).
VM_RUNTIME := $(TARGET_DIR)/$(LOADER_TRIPLE)/loader/loader-vm
# libkrun (`--vmm libkrun`) linked into the VM runtime, in a cargo run of its own so the small
# loader never carries it; `make VM_FEATURES=` builds the runtime with qemu only.
VM_FEATURES ?= --features krun
# Size flags for the musl loader beyond .cargo/config.toml: rust-lld (from the toolchain) with
# identical-code folding, and no unwind tables (loader/link/no-unwind.ld).
GCC_LD := $(shell rustc --print sysroot)/lib/rustlib/x86_64-unknown-linux-gnu/bin/gcc-ld
LOADER_LINK := --config "target.$(MUSL).rustflags=['-C','link-arg=-fuse-ld=lld','-C','link-arg=-B$(GCC_LD)','-C','link-arg=-Wl,--icf=all','-C','link-arg=-Wl,--no-eh-frame-hdr','-C','link-arg=-Wl,-T,$(CURDIR)/loader/link/no-unwind.ld']"
# std rebuilt for the loader without its `backtrace` feature: the prebuilt std carries a DWARF
# symbolizer (gimli, addr2line, a demangler: ~210 KB of the loader) for panic backtraces the
# loader never prints; panics still print their message. build-std is unstable, so
# RUSTC_BOOTSTRAP lets this stable toolchain use it, as the Linux kernel's Rust build does. It
# needs the rust-src component (`deps` adds it); without it the plain build is used.
LOADER_STD := -Zbuild-std=std,panic_abort -Zbuild-std-features=
export OCI2BIN_EMBED_LOADER := $(LOADER)
export OCI2BIN_EMBED_VM_RUNTIME := $(VM_RUNTIME)

.PHONY: all deps loader packager test test-unit test-e2e bench demo install clean kernel kernel-smoke lint fuzz

# The entry points first install what is missing (`deps`, which may add the musl target), then do
# their work in a second make. That one reads this file afresh, so LOADER_TRIPLE sees the target
# deps just added; the first make computed it before deps ran.
ENTRY_POINTS := all demo test bench install
ifndef OCI2BIN_AFTER_DEPS
$(ENTRY_POINTS): deps
	@$(MAKE) --no-print-directory OCI2BIN_AFTER_DEPS=1 $@
else
all: loader packager

# The main job on an embedded default image that needs no network: Debian's busybox-static as a
# rootfs, packaged and run.
demo: all
	@rm -rf out/demo-rootfs && mkdir -p out/demo-rootfs/bin out/demo-rootfs/etc out/demo-rootfs/tmp
	@cp /bin/busybox out/demo-rootfs/bin/ && for a in $$(/bin/busybox --list); do [ $$a = busybox ] || ln -sf busybox out/demo-rootfs/bin/$$a; done
	@printf 'root:x:0:0:root:/root:/bin/sh\n' > out/demo-rootfs/etc/passwd
	$(OCI2BIN) --cmd '["sh","-c","echo hello from $$(hostname), a rootless container; uname -a; id; ls /"]' --tag busybox:demo dir:out/demo-rootfs out/busybox
	./out/busybox
	$(OCI2BIN) inspect out/busybox

test: all test-unit test-e2e

bench: all
	OCI2BIN=$(OCI2BIN) tests/bench/run.sh

install: all
	install -D -m 0755 $(OCI2BIN) $(DESTDIR)$(PREFIX)/bin/oci2bin
	ln -sf oci2bin $(DESTDIR)$(PREFIX)/bin/oci2vm
	if [ -f $(TARGET_DIR)/kernel/vmlinux ]; then install -D -m 0644 $(TARGET_DIR)/kernel/vmlinux $(DESTDIR)$(PREFIX)/share/oci2bin/vmlinux; fi
endif

# Idempotent: installs only what is missing; needs root (or sudo) only when something is.
deps:
	@missing=""; for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  echo "installing:$$missing"; \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi
	@python3 -m pip install --quiet --disable-pip-version-check -r tests/requirements.txt 2>&1 | \
	  grep -v 'Running pip as the .root. user' || true
	@rustup target list --installed 2>/dev/null | grep -qx $(MUSL) || rustup target add $(MUSL) || \
	  echo "warning: cannot add $(MUSL); the loader will be a static glibc build"
	@rustup component list --installed 2>/dev/null | grep -q '^rust-src' || rustup component add rust-src || \
	  echo "warning: cannot add rust-src; the loader will be built on the prebuilt std (bigger)"

# Builds for LOADER_TRIPLE, the triple LOADER names, so the checks look at what was just built.
loader:
ifeq ($(LOADER_TRIPLE),$(MUSL))
	@if rustup component list --installed 2>/dev/null | grep -q '^rust-src' && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) build -p loader --bin loader --profile loader --target $(MUSL) $(LOADER_LINK) $(LOADER_STD) && \
	  RUSTC_BOOTSTRAP=1 $(CARGO) build -p loader --bin loader-vm $(VM_FEATURES) --profile loader --target $(MUSL) $(LOADER_LINK) $(LOADER_STD); then :; \
	else \
	  echo "warning: loader built on the prebuilt std (no rust-src, or build-std failed): ~200 KB bigger" >&2; \
	  $(CARGO) build -p loader --bin loader --profile loader --target $(MUSL) $(LOADER_LINK) && \
	  $(CARGO) build -p loader --bin loader-vm $(VM_FEATURES) --profile loader --target $(MUSL) $(LOADER_LINK); \
	fi
else
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -p loader --bin loader --profile loader --target $(LOADER_TRIPLE)
	RUSTFLAGS="-C target-feature=+crt-static" $(CARGO) build -p loader --bin loader-vm $(VM_FEATURES) --profile loader --target $(LOADER_TRIPLE)
endif
	@$(check_loader)

# Every check exits non-zero on failure: a check that errors out must not pass (set -e, and
# readelf's output captured so its own failure counts).
define check_loader
set -e; f='$(LOADER)'; \
[ -f "$$f" ] || { echo "error: loader not built: $$f" >&2; exit 1; }; \
phdrs=$$(readelf -lW "$$f"); \
case "$$phdrs" in *INTERP*) echo "error: loader is not static (it has PT_INTERP): $$f" >&2; exit 1;; esac; \
size=$$(stat -c %s "$$f"); \
[ "$$size" -le 655360 ] || { echo "error: loader exceeds 640 KiB ($$size bytes): $$f" >&2; exit 1; }; \
echo "loader: $$f ($$size bytes, static)"; \
v='$(VM_RUNTIME)'; case "$$(readelf -lW "$$v")" in *INTERP*) echo "error: VM runtime is not static: $$v" >&2; exit 1;; esac; \
echo "vm runtime: $$v ($$(stat -c %s "$$v") bytes, static)"
endef

packager: loader
	OCI2BIN_EMBED_LOADER=$(LOADER) OCI2BIN_EMBED_VM_RUNTIME=$(VM_RUNTIME) $(CARGO) build --release -p oci2bin
	@echo "packager: $(OCI2BIN)"

test-unit:
	$(CARGO) test --profile testing -p loader -p oci2bin

# End-to-end: real fixtures, real consumers; the runtime suite runs as an unprivileged user.
test-e2e: kernel
	@tests/setup-test-user.sh
	OCI2BIN=$(OCI2BIN) $(CARGO) test --profile testing -p e2e -- --test-threads=2

# Fuzzing (cargo-fuzz, libFuzzer; tests/fuzz): every parser of untrusted bytes, each target for
# FUZZ_SECONDS, seeded from the fixtures; CI runs a short smoke (FUZZ_SECONDS=10).
FUZZ_SECONDS ?= 60
FUZZ_TARGETS := trailer_record tar_layer compressed_layer reference manifest keys_and_signatures loader_args sbom_databases
fuzz: all
	@command -v cargo-fuzz >/dev/null || $(CARGO) install cargo-fuzz --locked
	OCI2BIN=$(OCI2BIN) tests/fuzz/run.sh $(FUZZ_SECONDS) $(FUZZ_TARGETS)

lint:
	$(CARGO) fmt --all -- --check
	$(CARGO) clippy --all-targets -- -D warnings

# The microVM kernel for VM mode (R11): Debian's linux-source, tinyconfig + kernel/microvm.config.
KERNEL_PACKAGES := linux-source-6.1 bc bison flex libelf-dev build-essential xz-utils
kernel:
	@missing=""; for p in $(KERNEL_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || missing="$$missing $$p"; done; \
	if [ -n "$$missing" ]; then \
	  sudo=""; [ "$$(id -u)" = 0 ] || sudo=sudo; \
	  $$sudo apt-get update -qq && DEBIAN_FRONTEND=noninteractive $$sudo apt-get install -y -qq $$missing >/dev/null; \
	fi
	kernel/build.sh $(TARGET_DIR)/kernel/vmlinux

# Boots that kernel to a busybox init under qemu -M microvm (KVM, else emulation).
kernel-smoke: kernel
	kernel/smoke.sh $(TARGET_DIR)/kernel/vmlinux

clean:
	$(CARGO) clean
	rm -rf out
