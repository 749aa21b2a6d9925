{
  "targets": [
    {
      "target_name": "flamewire",
      "sources": [
        "native/binding.cc",
        "native/errors.cc",
        "native/libbpf_log.cc",
        "native/oncpu_sampler.cc",
        "native/perf_events.cc",
        "native/ring_reader.cc",
        "native/sampler_object.cc"
      ],
      "include_dirs": [
        "<!(node -p \"require('node-addon-api').include_dir\")",
        "bpf"
      ],
      "defines": [
        "NAPI_VERSION=8",
        "NAPI_DISABLE_CPP_EXCEPTIONS"
      ],
      "cflags": ["-fvisibility=hidden", "-Wall", "-Wextra", "-Wno-unused-parameter"],
      "cflags_cc": ["-fvisibility=hidden", "-std=c++17", "-fno-exceptions"],
      "libraries": ["-lbpf", "-lelf", "-lz"]
    }
  ]
}
