{
  "targets": [
    {
      "target_name": "gatehouse_native",
      "sources": ["native/addon.c"],
      "defines": ["NAPI_VERSION=8"],
      "cflags": ["-Wall", "-Wextra", "-Wno-unused-parameter", "-Wno-missing-field-initializers"]
    },
    {
      "target_name": "gatehouse-exec",
      "type": "executable",
      "sources": ["native/exec-wrapper.c"],
      "cflags": ["-Wall", "-Wextra"]
    }
  ]
}
