/* floor: the least an L4 relay can do, as the "floor" contender of bench/compare (1-3).
 * One thread, level-triggered epoll: accept, non-blocking connect to one backend, a PROXY
 * v1 or v2 header (from accept's peer address), then splice(2) both ways through pooled
 * pipes, half-close on EOF. No config, no timeouts, no limits beyond RLIMIT_NOFILE: a
 * benchmark tool for loopback only, never a server. Build: gcc -O2 -o floor floor.c
 *   floor LISTEN_IP:PORT BACKEND_IP:PORT [v1|v2|none]
 */
#define _GNU_SOURCE
#include <arpa/inet.h>
#include <errno.h>
#include <fcntl.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/epoll.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <unistd.h>

#define CHUNK (1 << 16) /* the default pipe capacity: never splice in more than fits */
#define POOL_MAX 1024

struct dir { int src, dst, p[2]; size_t len; int eof, shut; }; /* p: its pipe, read/write */
struct conn {
    int cfd, sfd, connected, cmask, smask, dead;
    struct dir d[2]; /* 0: client -> server, 1: server -> client */
    struct conn *next_dead;
};

static int ep, lfd, proxy_ver = 1;
static struct sockaddr_in backend, laddr;
static struct conn **byfd;
static int nfds_max, pool[POOL_MAX][2], npool;
static struct conn *dead; /* closed after each epoll batch: no fd reuse inside a batch */

static void die(const char *what) { perror(what); exit(1); }

static int parse_addr(const char *s, struct sockaddr_in *a) {
    char ip[64];
    const char *colon = strrchr(s, ':');
    if (!colon || colon - s >= (long)sizeof ip) return -1;
    memcpy(ip, s, colon - s);
    ip[colon - s] = 0;
    memset(a, 0, sizeof *a);
    a->sin_family = AF_INET;
    a->sin_port = htons((uint16_t)atoi(colon + 1));
    return inet_pton(AF_INET, ip, &a->sin_addr) == 1 ? 0 : -1;
}

static int get_pipe(int p[2]) {
    if (npool > 0) { npool--; p[0] = pool[npool][0]; p[1] = pool[npool][1]; return 0; }
    return pipe2(p, O_NONBLOCK | O_CLOEXEC);
}

static void put_pipe(int r, int w, size_t len) {
    if (len == 0 && npool < POOL_MAX) { pool[npool][0] = r; pool[npool][1] = w; npool++; return; }
    close(r);
    close(w);
}

static void set_mask(struct conn *c, int fd, int *cur, int want) {
    if (*cur == want) return;
    struct epoll_event ev = { .events = (uint32_t)want, .data.fd = fd };
    if (epoll_ctl(ep, EPOLL_CTL_MOD, fd, &ev) < 0) die("epoll_ctl mod");
    *cur = want;
    (void)c;
}

static void close_conn(struct conn *c) {
    if (!c->dead) { c->dead = 1; c->next_dead = dead; dead = c; }
}

static void reap(void) {
    while (dead) {
        struct conn *c = dead;
        dead = c->next_dead;
        byfd[c->cfd] = byfd[c->sfd] = NULL;
        close(c->cfd); /* closing removes the fds from the epoll set */
        close(c->sfd);
        for (int i = 0; i < 2; i++) put_pipe(c->d[i].p[0], c->d[i].p[1], c->d[i].len);
        free(c);
    }
}

/* Moves what it can in one direction; -1 on a socket error (reset, broken pipe). A short
 * read ends the round (the socket is most likely drained: no extra EAGAIN call for small
 * messages); a bulk transfer goes on while whole chunks come in and go out (at most 16). */
static int pump(struct dir *d, int connected) {
    for (int round = 0; round < 16; round++) {
        ssize_t in = 0, out = 0;
        size_t room = CHUNK - d->len;
        if (!d->eof && room > 0) {
            in = splice(d->src, NULL, d->p[1], NULL, room, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (in > 0) d->len += (size_t)in;
            else if (in == 0) d->eof = 1;
            else if (errno != EAGAIN) return -1;
        }
        if (connected && d->len > 0) {
            out = splice(d->p[0], NULL, d->dst, NULL, d->len, SPLICE_F_MOVE | SPLICE_F_NONBLOCK);
            if (out > 0) d->len -= (size_t)out;
            else if (out < 0 && errno != EAGAIN) return -1;
        }
        if (in < (ssize_t)room || out <= 0 || d->len > 0) break;
    }
    if (connected && d->eof && d->len == 0 && !d->shut) {
        shutdown(d->dst, SHUT_WR);
        d->shut = 1;
    }
    return 0;
}

/* Interest: a source is read while its pipe has room, a destination waits for room. */
static void update(struct conn *c) {
    int cm = 0, sm = 0;
    if (!c->connected) sm = EPOLLOUT;
    else {
        struct dir *up = &c->d[0], *down = &c->d[1];
        if (!up->eof && up->len < CHUNK) cm |= EPOLLIN;
        if (!down->eof && down->len < CHUNK) sm |= EPOLLIN;
        if (up->len > 0) sm |= EPOLLOUT;
        if (down->len > 0) cm |= EPOLLOUT;
    }
    set_mask(c, c->cfd, &c->cmask, cm);
    set_mask(c, c->sfd, &c->smask, sm);
}

static int write_header(struct conn *c, struct sockaddr_in *peer) {
    char buf[128];
    int n = 0;
    if (proxy_ver == 1) {
        char src[INET_ADDRSTRLEN], dst[INET_ADDRSTRLEN];
        inet_ntop(AF_INET, &peer->sin_addr, src, sizeof src);
        inet_ntop(AF_INET, &laddr.sin_addr, dst, sizeof dst);
        n = snprintf(buf, sizeof buf, "PROXY TCP4 %s %s %u %u\r\n", src, dst,
                     ntohs(peer->sin_port), ntohs(laddr.sin_port));
    } else if (proxy_ver == 2) {
        static const char sig[12] = "\r\n\r\n\0\r\nQUIT\n";
        memcpy(buf, sig, 12);
        buf[12] = 0x21; /* v2, PROXY */
        buf[13] = 0x11; /* TCP over IPv4 */
        buf[14] = 0;
        buf[15] = 12;
        memcpy(buf + 16, &peer->sin_addr, 4);
        memcpy(buf + 20, &laddr.sin_addr, 4);
        memcpy(buf + 24, &peer->sin_port, 2);
        memcpy(buf + 26, &laddr.sin_port, 2);
        n = 28;
    }
    /* Into the client->server pipe: it leaves with the first request bytes, one segment. */
    if (n > 0 && write(c->d[0].p[1], buf, (size_t)n) != n) return -1;
    c->d[0].len = (size_t)n;
    return 0;
}

static void on_accept(void) {
    for (;;) {
        struct sockaddr_in peer;
        socklen_t plen = sizeof peer;
        int cfd = accept4(lfd, (struct sockaddr *)&peer, &plen, SOCK_NONBLOCK | SOCK_CLOEXEC);
        if (cfd < 0) {
            if (errno == EAGAIN || errno == EINTR || errno == ECONNABORTED) return;
            if (errno == EMFILE || errno == ENFILE) return; /* retried on the next event */
            die("accept4");
        }
        int sfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
        struct conn *c = calloc(1, sizeof *c);
        if (c) c->d[0].p[0] = c->d[0].p[1] = c->d[1].p[0] = c->d[1].p[1] = -1;
        if (sfd < 0 || !c || cfd >= nfds_max || sfd >= nfds_max ||
            get_pipe(c->d[0].p) < 0 || get_pipe(c->d[1].p) < 0) {
            fprintf(stderr, "floor: out of descriptors or memory, dropping a connection\n");
            close(cfd);
            if (sfd >= 0) close(sfd);
            for (int i = 0; c && i < 2; i++)
                if (c->d[i].p[0] >= 0) put_pipe(c->d[i].p[0], c->d[i].p[1], 1);
            free(c);
            continue;
        }
        int one = 1;
        setsockopt(cfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        setsockopt(sfd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof one);
        c->cfd = cfd;
        c->sfd = sfd;
        c->d[0].src = c->d[1].dst = cfd;
        c->d[0].dst = c->d[1].src = sfd;
        byfd[cfd] = byfd[sfd] = c;
        if (write_header(c, &peer) < 0) die("header");
        if (connect(sfd, (struct sockaddr *)&backend, sizeof backend) == 0) c->connected = 1;
        else if (errno != EINPROGRESS) { close_conn(c); continue; }
        struct epoll_event ev = { .events = 0, .data.fd = cfd };
        if (epoll_ctl(ep, EPOLL_CTL_ADD, cfd, &ev) < 0) die("epoll_ctl add");
        ev.data.fd = sfd;
        if (epoll_ctl(ep, EPOLL_CTL_ADD, sfd, &ev) < 0) die("epoll_ctl add");
        c->cmask = c->smask = 0;
        if (c->connected && (pump(&c->d[0], 1) < 0)) { close_conn(c); continue; }
        update(c);
    }
}

static void on_event(int fd, uint32_t events) {
    struct conn *c = byfd[fd];
    if (!c || c->dead) return;
    if (events & EPOLLERR) { close_conn(c); return; } /* reset, refused */
    if (!c->connected) {
        if (fd != c->sfd || !(events & (EPOLLOUT | EPOLLHUP))) return;
        int err = 0;
        socklen_t len = sizeof err;
        getsockopt(c->sfd, SOL_SOCKET, SO_ERROR, &err, &len);
        if (err) { close_conn(c); return; }
        c->connected = 1;
        if (pump(&c->d[0], 1) < 0) { close_conn(c); return; }
        update(c);
        return;
    }
    /* Level-triggered: try the direction read from fd, then the one written to it. */
    int first = fd == c->cfd ? 0 : 1;
    if (pump(&c->d[first], 1) < 0 || pump(&c->d[1 - first], 1) < 0) { close_conn(c); return; }
    if (c->d[0].shut && c->d[1].shut) { close_conn(c); return; }
    update(c);
}

int main(int argc, char **argv) {
    if (argc < 3) {
        fprintf(stderr, "usage: floor LISTEN_IP:PORT BACKEND_IP:PORT [v1|v2|none]\n");
        return 2;
    }
    if (parse_addr(argv[1], &laddr) < 0 || parse_addr(argv[2], &backend) < 0) {
        fprintf(stderr, "floor: addresses are IPv4 a.b.c.d:port\n");
        return 2;
    }
    if (argc > 3) proxy_ver = !strcmp(argv[3], "v2") ? 2 : !strcmp(argv[3], "none") ? 0 : 1;
    signal(SIGPIPE, SIG_IGN);
    struct rlimit rl;
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        nfds_max = rl.rlim_cur > (1 << 20) ? (1 << 20) : (int)rl.rlim_cur;
    } else nfds_max = 1024;
    byfd = calloc((size_t)nfds_max, sizeof *byfd);
    lfd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    int one = 1;
    setsockopt(lfd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
    if (!byfd || lfd < 0 || bind(lfd, (struct sockaddr *)&laddr, sizeof laddr) < 0 ||
        listen(lfd, 4096) < 0)
        die("listen");
    ep = epoll_create1(EPOLL_CLOEXEC);
    struct epoll_event ev = { .events = EPOLLIN, .data.fd = lfd };
    if (ep < 0 || epoll_ctl(ep, EPOLL_CTL_ADD, lfd, &ev) < 0) die("epoll");
    struct epoll_event evs[256];
    for (;;) {
        int n = epoll_wait(ep, evs, 256, -1);
        if (n < 0) {
            if (errno == EINTR) continue;
            die("epoll_wait");
        }
        for (int i = 0; i < n; i++) {
            if (evs[i].data.fd == lfd) on_accept();
            else on_event(evs[i].data.fd, evs[i].events);
        }
        reap();
    }
}
