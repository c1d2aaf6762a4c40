/* A network of directed links for fault tests of replicas on loopback: each link is a TCP
 * proxy (listen on an ephemeral 127.0.0.1 port, forward every accepted connection to one
 * target) that the test can cut, heal and slow down. Replicas' peer connections are
 * one-directional (src/repl/peer.c: each node dials every other and only sends on that
 * connection), so pointing node A's --peers entry for B at the proxy of link A->B puts every
 * message A sends B through it, and nothing else.
 *
 * Cut: every connection of the link is closed and new ones are accepted and closed at once
 * (the sender sees its connection drop and keeps reconnecting, as after a real network cut).
 * Delay: every chunk read is held for a random time in [min, max] ms before it is written on,
 * order kept (a chunk never leaves before the one read before it), as a slow network or a
 * slow replica's full socket buffers would.
 *
 * One thread runs every link with poll(); the test controls them from any thread. A link's
 * randomness comes from the seed given to lp_start(), which the test prints. */
#ifndef CP_TEST_LINK_PROXY_H
#define CP_TEST_LINK_PROXY_H

/* accept4(SOCK_CLOEXEC): the test forks replicas while this thread accepts, and a replica that
 * inherited a proxied socket would keep it open after the proxy closes it (a cut that does
 * not cut). */
#ifndef _GNU_SOURCE
#error "link_proxy.h needs _GNU_SOURCE defined before the first include"
#endif

#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <poll.h>
#include <pthread.h>
#include <stdatomic.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

#include "base/prng.h"

#define LP_LINKS_MAX 16u
#define LP_PAIRS_MAX 8u          /* connections per link at once (a replica keeps one) */
#define LP_CHUNK_MAX (64u << 10) /* bytes read at once */
#define LP_QUEUE_MAX (32u << 20) /* held bytes per connection before reading pauses */

typedef struct lp_chunk {
    struct lp_chunk *next;
    uint64_t due_ms;
    size_t len, off;
    unsigned char data[];
} lp_chunk_t;

typedef struct lp_pair {
    int down, up; /* accepted from the sender; connected to the target */
    lp_chunk_t *head, *tail;
    size_t queued;
    uint64_t last_due;
} lp_pair_t;

typedef struct lp_link {
    int listen_fd;
    int port;
    struct sockaddr_in target;
    atomic_bool cut;
    atomic_uint delay_min_ms, delay_max_ms;
    atomic_ulong bytes, connections, refused;
    lp_pair_t pairs[LP_PAIRS_MAX];
    uint32_t npairs;
} lp_link_t;

typedef struct lp_net {
    lp_link_t links[LP_LINKS_MAX];
    uint32_t nlinks;
    pthread_t thread;
    atomic_bool stop;
    atomic_ulong rounds; /* poll rounds done: lets the controller wait for a change to apply */
    prng_t rng;
} lp_net_t;

static inline uint64_t lp_now_ms(void) {
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000 + (uint64_t)ts.tv_nsec / 1000000;
}

static inline void lp_pair_close(lp_pair_t *p) {
    close(p->down);
    close(p->up);
    for (lp_chunk_t *c = p->head, *next; c; c = next) {
        next = c->next;
        free(c);
    }
    *p = (lp_pair_t){.down = -1, .up = -1};
}

static inline void lp_link_drop(lp_link_t *l, uint32_t i) {
    lp_pair_close(&l->pairs[i]);
    l->pairs[i] = l->pairs[--l->npairs];
}

/* Adds a link forwarding to 127.0.0.1:target_port; returns its index. Before lp_start(). */
static inline int lp_add(lp_net_t *n, int target_port) {
    if (n->nlinks == LP_LINKS_MAX) return -1;
    lp_link_t *l = &n->links[n->nlinks];
    memset(l, 0, sizeof *l);
    l->target =
        (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)target_port)};
    inet_pton(AF_INET, "127.0.0.1", &l->target.sin_addr);
    struct sockaddr_in a = {.sin_family = AF_INET};
    inet_pton(AF_INET, "127.0.0.1", &a.sin_addr);
    l->listen_fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    socklen_t len = sizeof a;
    if (l->listen_fd < 0 || bind(l->listen_fd, (struct sockaddr *)&a, sizeof a) != 0 ||
        listen(l->listen_fd, 16) != 0 || getsockname(l->listen_fd, (struct sockaddr *)&a, &len))
        return -1;
    l->port = ntohs(a.sin_port);
    return (int)n->nlinks++;
}

static inline void lp_accept(lp_net_t *n, lp_link_t *l) {
    (void)n;
    for (;;) {
        int fd = accept4(l->listen_fd, NULL, NULL, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (fd < 0) return;
        if (atomic_load(&l->cut) || l->npairs == LP_PAIRS_MAX) {
            atomic_fetch_add(&l->refused, 1);
            close(fd);
            continue;
        }
        /* Loopback connects finish at once (or are refused: the target is down, and so the
         * sender's connection drops too, as it would without the proxy). */
        int up = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (up < 0 || connect(up, (struct sockaddr *)&l->target, sizeof l->target) != 0) {
            if (up >= 0) close(up);
            close(fd);
            continue;
        }
        fcntl(up, F_SETFL, fcntl(up, F_GETFL) | O_NONBLOCK);
        int one = 1;
        setsockopt(up, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        l->pairs[l->npairs++] = (lp_pair_t){.down = fd, .up = up};
        atomic_fetch_add(&l->connections, 1);
    }
}

/* Reads what the sender sent into a chunk due after the link's current delay. */
static inline bool lp_read_down(lp_net_t *n, lp_link_t *l, lp_pair_t *p) {
    lp_chunk_t *c = malloc(sizeof *c + LP_CHUNK_MAX);
    if (!c) return false;
    ssize_t k = recv(p->down, c->data, LP_CHUNK_MAX, 0);
    if (k < 0 && (errno == EAGAIN || errno == EINTR)) {
        free(c);
        return true;
    }
    if (k <= 0) {
        free(c);
        return false;
    }
    uint32_t lo = atomic_load(&l->delay_min_ms), hi = atomic_load(&l->delay_max_ms);
    uint64_t delay = lo + (hi > lo ? prng_below(&n->rng, hi - lo + 1) : 0);
    uint64_t due = lp_now_ms() + delay;
    if (due < p->last_due) due = p->last_due;
    p->last_due = due;
    *c = (lp_chunk_t){.due_ms = due, .len = (size_t)k};
    if (p->tail)
        p->tail->next = c;
    else
        p->head = c;
    p->tail = c;
    p->queued += (size_t)k;
    atomic_fetch_add(&l->bytes, (unsigned long)k);
    return true;
}

/* Writes the chunks that are due; false when the target's connection broke. */
static inline bool lp_write_up(lp_pair_t *p, uint64_t now) {
    while (p->head && p->head->due_ms <= now) {
        lp_chunk_t *c = p->head;
        ssize_t k = send(p->up, c->data + c->off, c->len - c->off, MSG_NOSIGNAL);
        if (k < 0 && (errno == EAGAIN || errno == EINTR)) return true;
        if (k <= 0) return false;
        c->off += (size_t)k;
        p->queued -= (size_t)k;
        if (c->off < c->len) return true;
        p->head = c->next;
        if (!p->head) p->tail = NULL;
        free(c);
    }
    return true;
}

static inline void *lp_main(void *arg) {
    lp_net_t *n = arg;
    struct pollfd fds[LP_LINKS_MAX * (1 + 2 * LP_PAIRS_MAX)];
    while (!atomic_load(&n->stop)) {
        uint64_t now = lp_now_ms();
        int timeout = 10;
        uint32_t nfds = 0;
        for (uint32_t i = 0; i < n->nlinks; i++) {
            lp_link_t *l = &n->links[i];
            if (atomic_load(&l->cut))
                while (l->npairs) lp_link_drop(l, 0);
            fds[nfds++] = (struct pollfd){.fd = l->listen_fd, .events = POLLIN};
            for (uint32_t k = 0; k < l->npairs; k++) {
                lp_pair_t *p = &l->pairs[k];
                fds[nfds++] =
                    (struct pollfd){.fd = p->down, .events = p->queued < LP_QUEUE_MAX ? POLLIN : 0};
                bool due = p->head && p->head->due_ms <= now;
                /* POLLIN on the target's side only ever reports its close. */
                fds[nfds++] = (struct pollfd){.fd = p->up, .events = POLLIN | (due ? POLLOUT : 0)};
                if (p->head && !due && (int)(p->head->due_ms - now) < timeout)
                    timeout = (int)(p->head->due_ms - now);
            }
        }
        if (poll(fds, nfds, timeout) < 0 && errno != EINTR) break;
        now = lp_now_ms();
        uint32_t f = 0;
        for (uint32_t i = 0; i < n->nlinks; i++) {
            lp_link_t *l = &n->links[i];
            uint32_t listen_at = f++, count = l->npairs;
            /* Walk the pairs polled this round backwards: dropping one moves the last into
             * its place, which has been handled already. */
            for (uint32_t k = count; k-- > 0;) {
                lp_pair_t *p = &l->pairs[k];
                short dr = fds[f + 2 * k].revents, ur = fds[f + 2 * k + 1].revents;
                bool ok = true;
                if (ur & (POLLIN | POLLHUP | POLLERR)) {
                    char sink[256];
                    ssize_t got = recv(p->up, sink, sizeof sink, MSG_DONTWAIT);
                    ok = got < 0 && (errno == EAGAIN || errno == EINTR);
                }
                if (ok && (dr & (POLLIN | POLLHUP | POLLERR))) ok = lp_read_down(n, l, p);
                if (ok) ok = lp_write_up(p, now);
                if (!ok) lp_link_drop(l, k);
            }
            f += 2 * count;
            if (fds[listen_at].revents & POLLIN) lp_accept(n, l);
        }
        atomic_fetch_add(&n->rounds, 1);
    }
    for (uint32_t i = 0; i < n->nlinks; i++) {
        while (n->links[i].npairs) lp_link_drop(&n->links[i], 0);
        close(n->links[i].listen_fd);
    }
    return NULL;
}

static inline bool lp_start(lp_net_t *n, uint64_t seed) {
    n->rng.state = seed;
    for (uint32_t i = 0; i < n->nlinks; i++)
        for (uint32_t k = 0; k < LP_PAIRS_MAX; k++)
            n->links[i].pairs[k] = (lp_pair_t){.down = -1, .up = -1};
    return pthread_create(&n->thread, NULL, lp_main, n) == 0;
}

static inline void lp_stop(lp_net_t *n) {
    atomic_store(&n->stop, true);
    pthread_join(n->thread, NULL);
}

/* Returns once the proxy thread has run two whole rounds since the call: a change made before
 * it (a cut) has been acted on. */
static inline void lp_sync(lp_net_t *n) {
    unsigned long r = atomic_load(&n->rounds);
    while (atomic_load(&n->rounds) < r + 2) {
        struct timespec ts = {0, 1000000};
        nanosleep(&ts, NULL);
    }
}

static inline void lp_cut(lp_net_t *n, int link, bool cut) {
    atomic_store(&n->links[link].cut, cut);
}

static inline void lp_delay(lp_net_t *n, int link, uint32_t min_ms, uint32_t max_ms) {
    atomic_store(&n->links[link].delay_min_ms, min_ms);
    atomic_store(&n->links[link].delay_max_ms, max_ms);
}

#endif
