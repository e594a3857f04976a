#!/usr/bin/env bash
# Compile every .cu file here to object code with nvcc, with the flags setup.py's
# CUDAExtension build uses. For machines without a CUDA build of torch or a GPU: proves the
# kernels compile for sm_90 (or $SLSAM_CUDA_ARCH), nothing more.
# Usage: PYTHON=/path/to/python csrc/cuda/check_compile.sh [output dir [source.cu ...]]
# Compiles every .cu here unless sources are named. SLSAM_CUDA_OUTPUT=cubin writes one cubin per
# source (a single architecture: for cuobjdump -sass) instead of object files.
# Needs nvcc and an interpreter that imports torch: $PYTHON (callers pass their own
# sys.executable), else python3 on PATH.
set -euo pipefail

here="$(cd "$(dirname "${BASH_SOURCE[0]}")" && pwd)"
out="${1:-$(mktemp -d)}"
mkdir -p "$out"
shift $(($# > 0 ? 1 : 0))
sources=("$@")
[ ${#sources[@]} -gt 0 ] || sources=("$here"/*.cu)
case "${SLSAM_CUDA_OUTPUT:-object}" in
  object) mode=-c suffix=o ;;
  cubin) mode=-cubin suffix=cubin ;;
  *) echo "check_compile.sh: SLSAM_CUDA_OUTPUT must be 'object' or 'cubin'" >&2; exit 2 ;;
esac
nvcc="${NVCC:-nvcc}"
python="${PYTHON:-python3}"
command -v "$nvcc" >/dev/null || { echo "nvcc not found: install the CUDA toolkit or set NVCC" >&2; exit 2; }
"$python" -c 'import torch' 2>/dev/null || {
  echo "check_compile.sh: '$python' cannot import torch: set PYTHON to an interpreter that has it (e.g. PYTHON=.venv/bin/python)" >&2
  exit 2
}

includes=()
while IFS= read -r dir; do includes+=("-I$dir"); done < <(
  "$python" -c 'from torch.utils.cpp_extension import include_paths; print("\n".join(include_paths()))'
)
# CPU wheels of torch lack the generated c10/cuda/impl/cuda_cmake_macros.h; on Linux it only
# defines C10_CUDA_BUILD_SHARED_LIBS, which nothing here needs.
torch_include="${includes[0]#-I}"
[ -f "$torch_include/c10/cuda/impl/cuda_cmake_macros.h" ] || includes+=("-DC10_CUDA_NO_CMAKE_CONFIGURE_FILE")
archs="${SLSAM_CUDA_ARCH:-90}"
gencode=()
for arch in ${archs//[;,]/ }; do gencode+=("-gencode=arch=compute_${arch},code=sm_${arch}"); done

for source in "${sources[@]}"; do
  object="$out/$(basename "${source%.cu}").$suffix"
  "$nvcc" "$mode" "$source" -o "$object" "${includes[@]}" "${gencode[@]}" \
    -std=c++20 -O3 --fmad=false -Xcompiler -fPIC -DSLSAM_WITH_CUDA \
    -D__CUDA_NO_HALF_OPERATORS__ -D__CUDA_NO_HALF_CONVERSIONS__ \
    -D__CUDA_NO_BFLOAT16_CONVERSIONS__ -D__CUDA_NO_HALF2_OPERATORS__ --expt-relaxed-constexpr \
    -DTORCH_EXTENSION_NAME=_C -DTORCH_API_INCLUDE_EXTENSION_H &
done
status=0
for job in $(jobs -p); do wait "$job" || status=1; done
[ "$status" -eq 0 ] && echo "compiled: $(cd "$out" && ls ./*."$suffix" | tr '\n' ' ')"
exit "$status"
