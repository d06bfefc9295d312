/* SPDX-License-Identifier: Apache-2.0 */
/* The libbpf API (Debian's libbpf-dev 1.1.2) and the kernel UAPI constants it takes. */
#include <bpf/libbpf.h>
#include <bpf/bpf.h>
#include <linux/bpf.h>
#include <linux/if_link.h>
#include <linux/pkt_cls.h>
#include <net/if.h>

/*
 * A few system calls and macros the Swift Glibc module does not expose (it is
 * built without _GNU_SOURCE), and one va_list helper Swift cannot express.
 * They are static inline so this stays a header-only system library target.
 */
#include <stdarg.h>
#include <stdio.h>
#include <unistd.h>
#include <sys/syscall.h>
#include <sys/vfs.h>
#include <sys/mount.h>
#include <linux/magic.h>

/*
 * vsnprintf() on a copy of ap, so the caller can measure first and format
 * again into a larger buffer: Swift has no va_copy, and on x86-64 a va_list
 * is consumed by the first vsnprintf().
 */
static inline int bpfnet_vsnprintf_copy(char *buf, size_t size, const char *fmt, va_list ap)
{
	va_list copy;
	int n;

	va_copy(copy, ap);
	n = vsnprintf(buf, size, fmt, copy);
	va_end(copy);
	return n;
}

/* The kernel's internal ENOTSUPP (524) leaks to user space from bpf(2) batch ops. */
#define BPFNET_ENOTSUPP 524
