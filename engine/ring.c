/*
 * The io_uring module. See include/ringcast/ring.h.
 */
#include "ringcast/ring.h"

#include <errno.h>
#include <stdlib.h>
#include <string.h>
#include <sys/mman.h>

#include "ringcast/assert.h"
#include "ringcast/log.h"

/*
 * Returns a free submission slot. When the queue is full the prepared entries are submitted
 * first: large fan-outs prepare more sends than the queue holds, and submitting early is
 * cheaper than failing them.
 */
static struct io_uring_sqe *get_sqe(struct rc_ring *r)
{
    struct io_uring_sqe *sqe = io_uring_get_sqe(&r->uring);
    if (!sqe) {
        int ret = io_uring_submit(&r->uring);
        rc_assert(ret >= 0);
        r->queued = 0;
        sqe = io_uring_get_sqe(&r->uring);
        rc_assert(sqe != NULL);
    }
    r->queued++;
    return sqe;
}

static void probe_features(struct rc_ring *r)
{
    struct io_uring_probe *p = io_uring_get_probe_ring(&r->uring);
    if (p) {
        r->features.msg_ring = io_uring_opcode_supported(p, IORING_OP_MSG_RING);
        r->features.send_zc = io_uring_opcode_supported(p, IORING_OP_SEND_ZC);
        io_uring_free_probe(p);
    }
    r->features.bundles = (r->uring.features & IORING_FEAT_RECVSEND_BUNDLE) != 0;
}

int rc_ring_init(struct rc_ring *r, unsigned entries, unsigned cq_entries, unsigned files)
{
    struct io_uring_params p;
    int ret;

    memset(r, 0, sizeof(*r));
    memset(&p, 0, sizeof(p));
    p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL | IORING_SETUP_SINGLE_ISSUER |
              IORING_SETUP_DEFER_TASKRUN;
    p.cq_entries = cq_entries;
    ret = io_uring_queue_init_params(entries, &r->uring, &p);
    if (ret == -EINVAL) {
        /* Kernels before 6.1 lack DEFER_TASKRUN; completions then run as ordinary task work. */
        memset(&p, 0, sizeof(p));
        p.flags = IORING_SETUP_CQSIZE | IORING_SETUP_SUBMIT_ALL;
        p.cq_entries = cq_entries;
        ret = io_uring_queue_init_params(entries, &r->uring, &p);
    } else if (ret == 0) {
        r->features.defer_taskrun = true;
    }
    if (ret < 0)
        return ret;
    probe_features(r);
    if (files > 0) {
        ret = io_uring_register_files_sparse(&r->uring, files);
        if (ret < 0) {
            io_uring_queue_exit(&r->uring);
            return ret;
        }
    }
    return 0;
}

void rc_ring_exit(struct rc_ring *r)
{
    if (r->br) {
        io_uring_unregister_buf_ring(&r->uring, 0);
        munmap(r->br, r->buf_count * sizeof(struct io_uring_buf));
        free(r->buf_base);
    }
    io_uring_queue_exit(&r->uring);
    memset(r, 0, sizeof(*r));
}

int rc_ring_fd(const struct rc_ring *r)
{
    return r->uring.ring_fd;
}

int rc_ring_setup_buffers(struct rc_ring *r, unsigned count, unsigned size)
{
    struct io_uring_buf_reg reg;
    size_t ring_bytes = count * sizeof(struct io_uring_buf);
    int ret;

    rc_assert(count > 0 && (count & (count - 1)) == 0);
    /* The buffer ring is shared with the kernel and must be page aligned. */
    void *br = mmap(NULL, ring_bytes, PROT_READ | PROT_WRITE, MAP_ANONYMOUS | MAP_PRIVATE, -1, 0);
    if (br == MAP_FAILED)
        return -errno;
    char *base = malloc((size_t)count * size);
    if (!base) {
        munmap(br, ring_bytes);
        return -ENOMEM;
    }
    memset(&reg, 0, sizeof(reg));
    reg.ring_addr = (uint64_t)(uintptr_t)br;
    reg.ring_entries = count;
    reg.bgid = 0;
    ret = io_uring_register_buf_ring(&r->uring, &reg, 0);
    if (ret < 0) {
        munmap(br, ring_bytes);
        free(base);
        return ret;
    }
    r->br = br;
    r->buf_base = base;
    r->buf_count = count;
    r->buf_size = size;
    /*
     * Touch every buffer now: the kernel fills them in rotation, so they would otherwise become
     * resident one by one as connections arrive and look like a per-connection cost. They are
     * a fixed cost of the worker, and RSS should say so from the start.
     */
    memset(base, 0, (size_t)count * size);
    io_uring_buf_ring_init(r->br);
    for (unsigned i = 0; i < count; i++)
        io_uring_buf_ring_add(r->br, base + (size_t)i * size, size, (unsigned short)i,
                              io_uring_buf_ring_mask(count), (int)i);
    io_uring_buf_ring_advance(r->br, (int)count);
    return 0;
}

char *rc_ring_buffer(const struct rc_ring *r, unsigned bid)
{
    rc_assert(bid < r->buf_count);
    return r->buf_base + (size_t)bid * r->buf_size;
}

void rc_ring_buffer_recycle(struct rc_ring *r, unsigned bid)
{
    io_uring_buf_ring_add(r->br, rc_ring_buffer(r, bid), r->buf_size, (unsigned short)bid,
                          io_uring_buf_ring_mask(r->buf_count), 0);
    io_uring_buf_ring_advance(r->br, 1);
}

int rc_ring_cqe_buffer(const struct rc_cqe *cqe)
{
    if (!(cqe->flags & IORING_CQE_F_BUFFER))
        return -1;
    return (int)(cqe->flags >> IORING_CQE_BUFFER_SHIFT);
}

void rc_ring_accept_direct(struct rc_ring *r, int listen_fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    /* Direct descriptors live in no process fd table, so SOCK_CLOEXEC is meaningless and the
     * kernel rejects it. */
    io_uring_prep_multishot_accept_direct(sqe, listen_fd, NULL, NULL, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_accept_direct_addr(struct rc_ring *r, int listen_fd, struct sockaddr *addr,
                                socklen_t *addrlen, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    /*
     * liburing 2.3 stores file_index + 1 in the SQE without special-casing the allocation
     * sentinel (later versions do), so "allocate a free slot" is asked for as ALLOC - 1, the
     * same way io_uring_prep_multishot_accept_direct() does it; both versions read it right.
     */
    io_uring_prep_accept_direct(sqe, listen_fd, addr, addrlen, 0, IORING_FILE_INDEX_ALLOC - 1);
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_accept(struct rc_ring *r, int listen_fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_multishot_accept(sqe, listen_fd, NULL, NULL, SOCK_CLOEXEC);
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_recv_multishot(struct rc_ring *r, unsigned fd, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_recv_multishot(sqe, (int)fd, NULL, 0, 0);
    sqe->flags |= IOSQE_FIXED_FILE | IOSQE_BUFFER_SELECT;
    sqe->buf_group = 0;
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_recv(struct rc_ring *r, int fd, void *buf, unsigned len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_recv(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_read(struct rc_ring *r, int fd, void *buf, unsigned len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_read(sqe, fd, buf, len, 0);
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_send(struct rc_ring *r, int fd, bool fixed, const void *buf, unsigned len, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    /* MSG_NOSIGNAL: a peer that has gone must produce -EPIPE here, not SIGPIPE for the process. */
    io_uring_prep_send(sqe, fd, buf, len, MSG_NOSIGNAL);
    if (fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_sendmsg(struct rc_ring *r, int fd, bool fixed, const struct msghdr *msg, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_sendmsg(sqe, fd, msg, MSG_NOSIGNAL);
    if (fixed)
        sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_shutdown_direct(struct rc_ring *r, unsigned fd, int how, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_shutdown(sqe, (int)fd, how);
    sqe->flags |= IOSQE_FIXED_FILE;
    io_uring_sqe_set_data64(sqe, ud);
}

void rc_ring_close_direct(struct rc_ring *r, unsigned fd)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_close_direct(sqe, fd);
    io_uring_sqe_set_data64(sqe, rc_ud(NULL, RC_OP_IGNORE, 0));
}

void rc_ring_close(struct rc_ring *r, int fd)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_close(sqe, fd);
    io_uring_sqe_set_data64(sqe, rc_ud(NULL, RC_OP_IGNORE, 0));
}

void rc_ring_cancel(struct rc_ring *r, uint64_t ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_cancel64(sqe, ud, 0);
    io_uring_sqe_set_data64(sqe, rc_ud(NULL, RC_OP_IGNORE, 0));
}

void rc_ring_msg(struct rc_ring *r, int target_fd, uint64_t ud, int32_t res, uint64_t fail_ud)
{
    struct io_uring_sqe *sqe = get_sqe(r);
    io_uring_prep_msg_ring(sqe, target_fd, (unsigned)res, ud, 0);
    /* Success needs no completion on the sending side; only a failure must be seen. */
    sqe->flags |= IOSQE_CQE_SKIP_SUCCESS;
    io_uring_sqe_set_data64(sqe, fail_ud);
}

int rc_ring_submit(struct rc_ring *r)
{
    int ret = io_uring_submit(&r->uring);
    r->queued = 0;
    return ret < 0 ? ret : 0;
}

int rc_ring_run(struct rc_ring *r, int timeout_ms, void (*fn)(void *arg, const struct rc_cqe *cqe),
                void *arg)
{
    struct io_uring_cqe *cqe;
    struct __kernel_timespec ts;
    unsigned head, n = 0;
    int ret;

    ts.tv_sec = timeout_ms / 1000;
    ts.tv_nsec = (long long)(timeout_ms % 1000) * 1000000;
    ret = io_uring_submit_and_wait_timeout(&r->uring, &cqe, 1, timeout_ms >= 0 ? &ts : NULL, NULL);
    r->queued = 0;
    if (ret < 0 && ret != -ETIME && ret != -EINTR && ret != -EBUSY)
        return ret;
    /*
     * Callbacks may queue new operations and, when the submission queue fills, submit them;
     * that never touches the completion queue, so iterating it here stays valid.
     */
    io_uring_for_each_cqe(&r->uring, head, cqe)
    {
        struct rc_cqe c = {cqe->user_data, cqe->res, cqe->flags};
        if (fn)
            fn(arg, &c);
        n++;
    }
    io_uring_cq_advance(&r->uring, n);
    return (int)n;
}
