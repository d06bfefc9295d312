// SPDX-License-Identifier: Apache-2.0
// libFuzzer's driver, for an executable that brings its own main (SwiftPM
// names a Swift executable's entry point after the target).
#pragma once
#include <stddef.h>
#include <stdint.h>

int LLVMFuzzerRunDriver(int *argc, char ***argv, int (*callback)(const uint8_t *data, size_t size));
