#!/usr/bin/env bash
# Makes a virtual environment at DIR with the real Azure Functions Python language worker
# (azure-functions-worker 1.1.9 from PyPI) and prints the command that starts it.
# `switchboard serve` runs this (embedded) the first time a python pool has no command.
#
#   scripts/install-python-worker.sh DIR
set -euo pipefail
dir=${1:?usage: install-python-worker.sh DIR}
check() { "$dir/bin/python" -c 'import azure_functions_worker, grpc, azure.functions' 2>/dev/null; }
if [ -x "$dir/bin/python" ] && check; then
  echo "$dir/bin/python -m azure_functions_worker"
  exit 0
fi
python=${PYTHON:-python3}
"$python" -m venv "$dir"
pip=("$dir/bin/pip" install -q --disable-pip-version-check)
# 1.1.9 pins grpcio 1.33, which has no wheel for current Pythons: install the worker without
# its dependencies, then a grpcio that has a wheel and the protobuf its generated code needs.
# pip reports the broken pin afterwards; that is expected.
"${pip[@]}" --no-deps azure-functions-worker==1.1.9
"${pip[@]}" grpcio==1.85.3 protobuf==3.20.3 azure-functions==1.26.0 2>&1 | grep -v "dependency conflicts\|requires grpcio\|which is incompatible\|does not currently take into account" || true
check || { echo "the worker does not import after installation" >&2; exit 1; }
echo "$dir/bin/python -m azure_functions_worker"
