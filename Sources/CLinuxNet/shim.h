/* SPDX-License-Identifier: Apache-2.0 */
/*
 * What LinuxNet needs from C and Swift's Glibc module does not expose (it is
 * built without _GNU_SOURCE): setns(2), naming a thread, and the kernel's
 * rtnetlink UAPI (message structs and constants), so Swift never re-declares
 * them. Header-only: a system library target with nothing to link.
 */
#include <unistd.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <linux/sched.h>
#include <linux/netlink.h>
#include <linux/rtnetlink.h>
#include <linux/if_link.h>
#include <linux/pkt_sched.h>
#include <linux/net_namespace.h>

/* setns(2) for network namespaces; glibc only declares setns() with _GNU_SOURCE. */
static inline int linuxnet_setns_net(int fd)
{
	return (int)syscall(__NR_setns, fd, CLONE_NEWNET);
}

/* The calling thread's name (at most 15 bytes), as ps -L and /proc/PID/task/TID/comm show it. */
static inline int linuxnet_set_thread_name(const char *name)
{
	return prctl(PR_SET_NAME, (unsigned long)name, 0UL, 0UL, 0UL);
}
