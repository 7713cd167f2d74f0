#!/bin/sh
# Entrypoint of both images (Dockerfile, Dockerfile.gpu): put the CUDA forward-compatibility
# libraries on the library path when the host driver is older than the image's CUDA, then exec
# `convoy serve` with the container's arguments. exec, so convoy replaces this shell as PID 1 and
# receives SIGTERM itself (its graceful drain).
#
# Why: the nvidia/cuda base images ship the cuda-compat package, a newer user-mode driver
# (libcuda.so.1) in /usr/local/cuda/compat. On datacenter GPUs it lets an older driver branch run
# the image's newer CUDA. It must be used only then: on a driver as new as the image's CUDA or newer,
# the compat libcuda would shadow the host's and CUDA would fail to start. Recent NVIDIA Container
# Toolkits switch it on themselves (their enable-cuda-compat hook, via ldconfig); older toolkits and
# other runtimes do not. Modelled on text-embeddings-inference's cuda-entrypoint.sh, with changes:
# - the image's CUDA is read from CUDA_VERSION (set by the nvidia/cuda base), not copied in here;
# - the driver's CUDA is the "CUDA Version: X.Y" field of nvidia-smi's banner;
# - the compat libcuda is tried (cuInit) before it is kept: forward compatibility works only on
#   datacenter GPUs (and select RTX server SKUs) on supported driver branches. Elsewhere cuInit
#   fails (CUDA errors 803/804), where the host driver alone may still run the image's CUDA by
#   minor-version compatibility (a 12.x driver >= 525.60.13 for cu126).
# The CPU image has neither CUDA_VERSION nor the compat directory: there this only execs convoy.
set -eu

compat_dir=${CUDA_COMPAT_DIR:-/usr/local/cuda/compat}

# "12.6.3" -> 12060 and "12.4" -> 12040: the encoding of cuDriverGetVersion(). Non-numbers -> "".
cuda_number() {
    case $1 in
        [0-9]*.[0-9]*) ;;
        *) return 0 ;;
    esac
    major=${1%%.*}
    minor=${1#*.}
    minor=${minor%%.*}
    case $major$minor in
        *[!0-9]*) return 0 ;;
    esac
    echo $((major * 1000 + minor * 10))
}

# The newest CUDA the host driver supports, from nvidia-smi's banner; "" without a visible GPU.
driver_cuda() {
    command -v nvidia-smi > /dev/null 2>&1 || return 0
    nvidia-smi 2> /dev/null | sed -n 's/.*CUDA Version: *\([0-9][0-9.]*\).*/\1/p' | head -n 1
}

if [ -n "${CUDA_VERSION:-}" ] && [ -d "$compat_dir" ]; then
    driver=$(driver_cuda)
    have=$(cuda_number "$driver")
    want=$(cuda_number "$CUDA_VERSION")
    if [ -n "$have" ] && [ -n "$want" ] && [ "$have" -lt "$want" ]; then
        with_compat="$compat_dir${LD_LIBRARY_PATH:+:$LD_LIBRARY_PATH}"
        # The same lookup torch does later (libcuda.so.1 by name), in a throw-away process.
        if LD_LIBRARY_PATH=$with_compat python3 -c \
            'import ctypes, sys; sys.exit(ctypes.CDLL("libcuda.so.1").cuInit(0) != 0)' 2> /dev/null; then
            export LD_LIBRARY_PATH="$with_compat"
            echo "docker-entrypoint: the driver supports CUDA $driver, the image has $CUDA_VERSION:" \
                "using the forward-compatibility libraries in $compat_dir" >&2
        else
            echo "docker-entrypoint: the driver supports CUDA $driver, the image has $CUDA_VERSION," \
                "and forward compatibility does not work here (datacenter GPUs on supported driver" \
                "branches only): continuing with the host driver alone" >&2
        fi
    fi
fi

exec convoy serve "$@"
