#!/usr/bin/env bash
# Builds bench/gpu/gpu_check (the standalone GPU check) on the development machine, which has
# nvcc but no GPU, for the GPU machine, which has a GPU but should build nothing.
#
#   bench/gpu/build.sh [OUT_DIR]      (default: build/gpu-check)
#
# Links every native/cuda/*.cu (the kernels the addon ships) with gpu_check.cu and the CPU
# reference native/core/reference.cpp. The CUDA runtime is linked statically: the binary needs
# only the NVIDIA driver and glibc/libstdc++ there. sm_80/86/89/90 code plus compute_90 PTX.
set -euo pipefail
root=$(cd "$(dirname "${BASH_SOURCE[0]}")/../.." && pwd)
out=${1:-$root/build/gpu-check}
mkdir -p "$out/obj"
NVCC=${NVCC:-nvcc}
CXX=${CXX:-g++}
ARCH=(-gencode arch=compute_80,code=sm_80 -gencode arch=compute_86,code=sm_86
      -gencode arch=compute_89,code=sm_89 -gencode arch=compute_90,code=sm_90
      -gencode arch=compute_90,code=compute_90)
NVFLAGS=(-std=c++17 -O3 -Xcompiler -fPIC -Xcompiler -Wall "${ARCH[@]}")

if [[ ! -f $root/native/core/reference.cpp ]]; then
  echo "build.sh: native/core/reference.cpp (the CPU reference) is missing" >&2
  exit 1
fi

commit=$(git -C "$root" rev-parse --short HEAD 2>/dev/null || echo none)
if [[ -n $(git -C "$root" status --porcelain -- native bench 2>/dev/null) ]]; then commit="$commit+dirty"; fi

objs=()
for cu in "$root"/native/cuda/*.cu "$root"/bench/gpu/gpu_check.cu; do
  obj=$out/obj/$(basename "${cu%.cu}").o
  echo "nvcc $(realpath --relative-to="$root" "$cu")"
  "$NVCC" "${NVFLAGS[@]}" -DFUSEDPO_COMMIT="\"$commit\"" -c "$cu" -o "$obj" &
  objs+=("$obj")
done
echo "g++  native/core/reference.cpp"
"$CXX" -std=c++17 -O2 -fPIC -Wall -c "$root/native/core/reference.cpp" -o "$out/obj/reference.o" &
objs+=("$out/obj/reference.o")
# wait for every compile; fail if any failed
fail=0
for job in $(jobs -p); do wait "$job" || fail=1; done
if (( fail )); then echo "build.sh: a compile failed" >&2; exit 1; fi

"$NVCC" "${ARCH[@]}" -cudart static "${objs[@]}" -o "$out/gpu_check"
cp "$root/bench/gpu/gpu-check.sh" "$out/"
echo "built $out/gpu_check"
