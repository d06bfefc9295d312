/* SPDX-License-Identifier: Apache-2.0 */
/*
 * Compiling the bench's shared header for the host as well runs its
 * _Static_asserts with the host compiler, so a layout that differs between
 * the BPF target and the host fails the build on either side.
 */
#include "../../bpf/include/bench_shared.h"
