#!/usr/bin/env bash
# GPU check (issue 19): measures every GPU target of BENCHMARKS.md and prints one table (benchmarks/gpu_check.py).
#
#   bash benchmarks/gpu_check.sh            # on one H100 (16 CPU cores): <= 8 minutes, phantom and checkpoint included
#   bash benchmarks/gpu_check.sh --tiny     # every size shrunk: a couple of minutes on a CPU (.ci/run runs it)
#   bash benchmarks/gpu_check.sh --only mixture,train_step
#
# Python: $PYTHON if set, else the checkout's .venv, else python3; it needs this project's dependencies
# (pip install -c constraints.txt -e ".[test]"); the checkout itself is put on PYTHONPATH. Exit status non-zero only
# when a check fails with an error, not when a target is missed.
set -euo pipefail
cd "$(dirname "$0")/.."
if [ -z "${PYTHON:-}" ]; then
  if [ -x .venv/bin/python ]; then PYTHON=.venv/bin/python; else PYTHON=python3; fi
fi
missing=$("$PYTHON" - <<'PY'
import importlib.util
need = {"monai": "monai", "open_clip": "open_clip_torch", "ignite": "pytorch-ignite", "pytest": "pytest",
        "sklearn": "scikit-learn", "pandas": "pandas", "PIL": "pillow", "yaml": "pyyaml"}
print(" ".join(pkg for module, pkg in need.items() if importlib.util.find_spec(module) is None))
PY
)
if [ -n "$missing" ]; then
  echo "gpu_check: $PYTHON lacks $missing; install the project's dependencies first:" >&2
  echo "  $PYTHON -m pip install -c constraints.txt -e '.[test]'   (or set PYTHON to an interpreter that has them)" >&2
  exit 2
fi
export PYTHONPATH="$PWD${PYTHONPATH:+:$PYTHONPATH}" PYTHONUNBUFFERED=1
exec "$PYTHON" benchmarks/gpu_check.py "$@"
