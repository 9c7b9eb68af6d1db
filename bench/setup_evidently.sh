#!/usr/bin/env bash
# Create bench/.venv-evidently (Evidently needs pandas<3, so it cannot share the main venv).
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
venv="$here/.venv-evidently"
python="${PYTHON:-python3}"
if [ ! -x "$venv/bin/python" ]; then
  "$python" -m venv "$venv"
fi
"$venv/bin/python" -m pip install --quiet --upgrade pip
"$venv/bin/python" -m pip install --quiet -r "$here/requirements-evidently.txt"
"$venv/bin/python" -c "import evidently, pandas; print('evidently', evidently.__version__, 'pandas', pandas.__version__)"
