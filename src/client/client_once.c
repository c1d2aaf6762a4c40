/* client_call_once(): one request to one replica over a blocking socket, without the
 * library's I/O thread, batching or failover. Administration tools need exactly that: they ask
 * a given replica and want its own answer, not_leader included. */
#include <arpa/inet.h>
#include <errno.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/random.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "client/client.h"

static bool parse_address(const char *s, struct sockaddr_in *out) {
    const char *colon = strrchr(s, ':');
    char host[16];
    if (!colon || colon == s || (size_t)(colon - s) >= sizeof host) return false;
    memcpy(host, s, (size_t)(colon - s));
    host[colon - s] = '\0';
    if (!strcmp(host, "localhost")) strcpy(host, "127.0.0.1");
    char *end;
    errno = 0;
    long port = strtol(colon + 1, &end, 10);
    if (colon[1] == '\0' || *end != '\0' || errno || port < 1 || port > 65535) return false;
    *out = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    return inet_pton(AF_INET, host, &out->sin_addr) == 1;
}

static uint64_t now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

/* Waits until fd is ready for `events` or the deadline passes: 1 ready, 0 timeout, -1 error. */
static int wait_fd(int fd, short events, uint64_t deadline) {
    for (;;) {
        uint64_t now = now_ms();
        if (now >= deadline) return 0;
        struct pollfd p = {.fd = fd, .events = events};
        int rc = poll(&p, 1, (int)(deadline - now));
        if (rc > 0) return (p.revents & (events | POLLHUP | POLLERR)) ? 1 : -1;
        if (rc == 0) return 0;
        if (errno != EINTR) return -1;
    }
}

/* Sends or receives exactly n bytes before the deadline; a client status otherwise. */
static int32_t io_all(int fd, const void *out, void *in, size_t n, uint64_t deadline) {
    size_t done = 0;
    while (done < n) {
        int w = wait_fd(fd, out ? POLLOUT : POLLIN, deadline);
        if (w == 0) return CLIENT_ERR_TIMEOUT;
        if (w < 0) return CLIENT_ERR_UNREACHABLE;
        ssize_t k =
            out ? send(fd, (const unsigned char *)out + done, n - done, MSG_NOSIGNAL | MSG_DONTWAIT)
                : recv(fd, (unsigned char *)in + done, n - done, MSG_DONTWAIT);
        if (k < 0 && (errno == EINTR || errno == EAGAIN || errno == EWOULDBLOCK)) continue;
        if (k <= 0) return CLIENT_ERR_UNREACHABLE;
        done += (size_t)k;
    }
    return CLIENT_OK;
}

static int32_t connect_by(int fd, const struct sockaddr_in *a, uint64_t deadline) {
    int rc = connect(fd, (const struct sockaddr *)a, sizeof *a);
    if (rc == 0) return CLIENT_OK;
    if (errno != EINPROGRESS) return CLIENT_ERR_UNREACHABLE;
    int w = wait_fd(fd, POLLOUT, deadline);
    if (w == 0) return CLIENT_ERR_TIMEOUT;
    int err = 0;
    socklen_t len = sizeof err;
    if (w < 0 || getsockopt(fd, SOL_SOCKET, SO_ERROR, &err, &len) != 0 || err != 0)
        return CLIENT_ERR_UNREACHABLE;
    return CLIENT_OK;
}

int32_t client_call_once(const char *address, uint8_t op, const void *body, uint32_t size,
                         void *reply, uint32_t reply_capacity, uint32_t *reply_size,
                         uint32_t timeout_ms) {
    if (reply_size) *reply_size = 0;
    struct sockaddr_in addr;
    if (!address || !parse_address(address, &addr)) return CLIENT_ERR_ADDRESS;
    uint32_t item = proto_request_item_size(op);
    if (op < 1 || op > PROTO_OP_MAX || (item == 0 ? size != 0 : size % item != 0) ||
        size / (item ? item : 1) > PROTO_ITEMS_MAX || (size > 0 && !body))
        return CLIENT_ERR_INVALID;
    proto_header_t h = {.request_id = 1, .operation = op, .command = PROTO_REQUEST};
    while (h.client_id == 0)
        if (getrandom(&h.client_id, sizeof h.client_id, 0) != (ssize_t)sizeof h.client_id)
            return CLIENT_ERR_SYSTEM;
    proto_seal(&h, body, size);

    unsigned char *buf = malloc(PROTO_MESSAGE_MAX);
    int fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (!buf || fd < 0) {
        free(buf);
        if (fd >= 0) close(fd);
        return CLIENT_ERR_SYSTEM;
    }
    int one = 1;
    setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
    uint64_t deadline = now_ms() + timeout_ms;
    int32_t st = connect_by(fd, &addr, deadline);
    if (st == CLIENT_OK) st = io_all(fd, &h, NULL, sizeof h, deadline);
    if (st == CLIENT_OK && size) st = io_all(fd, body, NULL, size, deadline);
    if (st == CLIENT_OK) st = io_all(fd, NULL, buf, PROTO_HEADER_SIZE, deadline);
    uint32_t msg_size = 0;
    if (st == CLIENT_OK && proto_check_header(buf, PROTO_HEADER_SIZE, &msg_size) != PROTO_OK)
        st = CLIENT_ERR_UNREACHABLE;
    if (st == CLIENT_OK && msg_size > PROTO_HEADER_SIZE)
        st = io_all(fd, NULL, buf + PROTO_HEADER_SIZE, msg_size - PROTO_HEADER_SIZE, deadline);
    close(fd);
    if (st == CLIENT_OK) {
        proto_header_t r;
        memcpy(&r, buf, sizeof r);
        const unsigned char *rbody = buf + PROTO_HEADER_SIZE;
        uint32_t rsize = msg_size - PROTO_HEADER_SIZE;
        if (proto_check_message(&r, rbody, PROTO_REPLY) != PROTO_OK || r.client_id != h.client_id ||
            r.request_id != h.request_id || r.operation != op || r.status > INT32_MAX) {
            st = CLIENT_ERR_UNREACHABLE; /* not an answer to this request */
        } else {
            if (reply && rsize)
                memcpy(reply, rbody, rsize < reply_capacity ? rsize : reply_capacity);
            if (reply_size) *reply_size = rsize;
            st = (int32_t)r.status;
        }
    }
    free(buf);
    return st;
}
