// SPDX-License-Identifier: Apache-2.0
// Nothing to compile: CFuzzer only declares libFuzzer's driver (include/CFuzzer.h).
#include "CFuzzer.h"
