# OGRT top-level Makefile: the two set-up commands of the README.
#   make demo   install what is needed, deploy locally, run a workload under `module load ogrt`, report
#   make test   install what is needed and run the whole test suite
#   make cluster  a virtual Slurm cluster (network namespaces), one job on it, its reports, down
SHELL := /bin/bash
PYTHON ?= python3
VENV := .venv
PY := $(VENV)/bin/python

# Debian packages the suite and the demo use (installed when run as root).
APT_PACKAGES := gcc make libc6-dev binutils python3 python3-venv python3-dev \
                g++ cmake lmod postgresql procps iproute2 git systemd \
                slurmctld slurmd slurm-client munge musl-tools gcc-multilib \
                nats-server chromium logrotate

.PHONY: all apt-deps venv preload test demo cluster clean

all: preload venv

apt-deps:
	@missing=$$(for p in $(APT_PACKAGES); do dpkg -s $$p >/dev/null 2>&1 || echo $$p; done); \
	if [ -n "$$missing" ]; then \
	  if [ "$$(id -u)" = 0 ]; then \
	    echo "==> installing Debian packages:" $$missing; \
	    apt-get update -qq && DEBIAN_FRONTEND=noninteractive apt-get install -y -qq $$missing >/dev/null; \
	  else \
	    echo "missing Debian packages (install them or run as root):" $$missing >&2; exit 1; \
	  fi; \
	fi

$(VENV)/.installed: pyproject.toml
	@echo "==> creating the Python venv in $(VENV)"
	$(PYTHON) -m venv $(VENV)
	$(VENV)/bin/pip install -q --upgrade pip
	$(VENV)/bin/pip install -q -e '.[test,web]'
	@touch $@

venv: $(VENV)/.installed

preload:
	@echo "==> building preload/libogrt.so"
	$(MAKE) -C preload

demo: apt-deps venv preload
	@$(SHELL) demo/run.sh

cluster: apt-deps venv preload
	@$(SHELL) demo/cluster-demo.sh

# tests/deploy/test_spack.py runs the real Spack of ../shared/spack when it is beside the checkout
# (with clingo from the venv), else it skips and says why.
test: apt-deps venv preload
	$(VENV)/bin/pytest

clean:
	-$(MAKE) -C preload clean
	rm -rf $(VENV) build dist *.egg-info .pytest_cache .hypothesis
