# The CPU addon, built by node-gyp (`npm run build:native`). CMakeLists.txt builds the same
# sources with cmake-js, plus the CUDA addon when nvcc is found.
#
# -z nodelete: the addon is never unmapped. Node dlcloses an addon when the last worker thread that
# loaded it exits, while the idle threads of its thread pool still wait inside its code.
#
# Baseline x86-64 code only: no -march flags. Faster instruction sets are chosen at run time
# (native/cpu/cpu_features.*), per function, so one prebuilt binary runs everywhere.
{
  "targets": [
    {
      "target_name": "fusedpo",
      "sources": [
        "<!@(node -p \"require('fs').readdirSync('native/napi').filter(f => f.endsWith('.cpp')).map(f => 'native/napi/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/core').filter(f => f.endsWith('.cpp')).map(f => 'native/core/' + f).join(' ')\")",
        "<!@(node -p \"require('fs').readdirSync('native/cpu').filter(f => f.endsWith('.cpp')).map(f => 'native/cpu/' + f).join(' ')\")"
      ],
      "conditions": [
        # The x86 SIMD kernels (*_avx2.cpp, *_avx512.cpp) are for x86 only: arm64 runs the generic
        # kernels through the same run-time dispatch (NEON is ARMv8's baseline).
        ["target_arch!='x64' and target_arch!='ia32'", {
          "sources!": ["<!@(node -p \"require('fs').readdirSync('native/cpu').filter(f => /_avx(2|512)\\.cpp$/.test(f)).map(f => 'native/cpu/' + f).join(' ')\")"]
        }]
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")", "native"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED", "NODE_API_SWALLOW_UNTHROWABLE_EXCEPTIONS"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions", "-fno-rtti", "-std=gnu++17", "-std=gnu++20"],
      "cflags": ["-fno-math-errno", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-std=c++17", "-fexceptions", "-fno-math-errno"],
      "ldflags": ["-pthread", "-Wl,-z,nodelete"],
      "xcode_settings": {
        "GCC_ENABLE_CPP_EXCEPTIONS": "YES",
        "CLANG_CXX_LANGUAGE_STANDARD": "c++17",
        "OTHER_CFLAGS": ["-O3", "-fno-math-errno"]
      },
      "msvs_settings": { "VCCLCompilerTool": { "ExceptionHandling": 1 } }
    }
  ]
}
