/*
 * io_uring constants newer than Debian 12's liburing 2.3 and 6.1 uapi headers.
 *
 * The engine runs on newer kernels than it is built against. Everything that the headers may
 * lack is defined here, once, guarded by #ifndef so newer headers win; whether the running
 * kernel supports it is probed at start-up (rc_ring_probe), never assumed.
 */
#ifndef RINGCAST_COMPAT_H
#define RINGCAST_COMPAT_H

#include <liburing.h>

/* Linux 6.10: send and receive bundles (several provided buffers per completion). */
#ifndef IORING_RECVSEND_BUNDLE
#define IORING_RECVSEND_BUNDLE (1U << 4)
#endif

/* Linux 6.10: the kernel advertises bundle support with this feature flag. */
#ifndef IORING_FEAT_RECVSEND_BUNDLE
#define IORING_FEAT_RECVSEND_BUNDLE (1U << 14)
#endif

/* Linux 6.4: a timeout that fires repeatedly; unused today, probed for the log line. */
#ifndef IORING_TIMEOUT_MULTISHOT
#define IORING_TIMEOUT_MULTISHOT (1U << 6)
#endif

#endif
