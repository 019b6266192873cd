{
  "targets": [
    {
      "target_name": "crashcart",
      "sources": [
        "native/addon.cc",
        "native/child.cc",
        "native/errors.cc",
        "native/file.cc",
        "native/process.cc",
        "native/loop.cc",
        "native/graft.cc",
        "native/spawn.cc",
        "native/lock.cc",
        "native/inroot.cc",
        "native/sandbox.cc",
        "native/net.cc"
      ],
      "include_dirs": ["<!(node -p \"require('node-addon-api').include_dir\")"],
      "defines": ["NAPI_VERSION=8", "NAPI_CPP_EXCEPTIONS", "NODE_ADDON_API_DISABLE_DEPRECATED"],
      "cflags!": ["-fno-exceptions"],
      "cflags_cc!": ["-fno-exceptions"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2", "-fstack-protector-strong"]
    },
    {
      "target_name": "crashcart-wait",
      "type": "executable",
      "sources": ["native/wait.cc"],
      "cflags_cc": ["-std=c++17", "-Wall", "-Wextra", "-O2", "-fstack-protector-strong"],
      "ldflags": ["-static"]
    },
    {
      "target_name": "sleeper",
      "type": "executable",
      "sources": ["images/demo/sleeper.c"],
      "cflags": ["-O2", "-Wall", "-Wextra"],
      "ldflags": ["-static"]
    }
  ]
}
