/*
 * loadgen: the load generator of issue 3, for ringcast and for other Server-Sent Events servers.
 *
 * It opens N event streams at a controlled rate, publishes events that carry a per-channel
 * sequence number and their send time, and measures what the clients receive (latency, losses,
 * duplicates, reordering) and what the server paid for it (memory per connection, CPU per
 * delivery). bench/loadgen.md explains the options and every figure it reports.
 *
 * Processes: the parent publishes, measures and reports. It forks one child per --per-process
 * clients (15 000 by default: one process may hold at most 20 000 descriptors here). Child k
 * binds its sockets to its own source address 127.0.0.(2+k), so no process runs out of the
 * ~28 000 ephemeral ports of one source/destination pair, and drives its clients with epoll.
 *
 * Parent and children share one anonymous mapping, the board: every child keeps its live
 * counters there (the parent polls them to follow the phases) and, before it exits, its totals
 * and latency histogram. Commands travel the other way as single bytes on a pipe per child,
 * which also wakes the child's epoll.
 */
#include <arpa/inet.h>
#include <ctype.h>
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <getopt.h>
#include <inttypes.h>
#include <math.h>
#include <netinet/in.h>
#include <netinet/tcp.h>
#include <signal.h>
#include <stdarg.h>
#include <stdbool.h>
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <strings.h>
#include <sys/epoll.h>
#include <sys/mman.h>
#include <sys/prctl.h>
#include <sys/resource.h>
#include <sys/socket.h>
#include <sys/un.h>
#include <sys/wait.h>
#include <time.h>
#include <unistd.h>

#define MAX_PROCS       250 /* source addresses 127.0.g.2 ... 127.0.g.251 */
#define MAX_SERVER_PIDS 64
#define MAX_TEMPLATE    512          /* bytes of a path template */
#define READ_BUF        (64 * 1024)  /* one per process, shared by all its clients */
#define ID_MAX          64           /* bytes of an event id kept for Last-Event-ID */
#define PUB_OUT_HIGH    (256 * 1024) /* unsent publisher bytes before queuing pauses */
#define CMD_TAG         UINT32_MAX   /* epoll tag of a child's command pipe */
#define NS              1000000000.0

/* Commands from the parent to a child, one byte each on the child's pipe. */
enum { CMD_STORM = 'S', CMD_FINAL = 'F', CMD_QUIT = 'Q' };

/* Exit statuses. */
enum { EXIT_CLEAN = 0, EXIT_FLAWED = 1, EXIT_USAGE = 2, EXIT_FATAL = 3 };

/* ---------------------------------------------------------------------------------------------
 * Options
 */

struct options {
    struct sockaddr_in target;
    char target_text[48];
    char path[MAX_TEMPLATE + 1]; /* request path, "%s" stands for the channel */
    uint32_t n;
    uint32_t channels;
    double connect_rate; /* per second over all processes; 0: all at once */
    double connect_timeout;
    uint32_t per_process;
    const char *publish_socket;
    bool http;                       /* publish with HTTP POST instead of RESP */
    struct sockaddr_in publish_addr; /* --publish-http */
    char publish_host[48];
    char publish_path[MAX_TEMPLATE + 1];
    uint32_t publish_conns;
    uint32_t pipeline;
    uint64_t events;
    double rate; /* events per second; 0: as fast as the server takes them */
    uint32_t size;
    uint64_t seed;
    double hold, drain_timeout, timeout;
    bool storm;
    pid_t server_pids[MAX_SERVER_PIDS];
    unsigned nserver_pids;
};

static struct options opt;

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: loadgen --target 127.0.0.1:PORT [options]\n"
            "\n"
            "Opens N Server-Sent Events streams, publishes numbered events that carry their send\n"
            "time, and reports delivery latency, losses, and the server's memory per connection\n"
            "and CPU per delivery. Only loopback (127.x.y.z) servers are accepted.\n"
            "\n"
            "Clients\n"
            "  --target HOST:PORT        the SSE server (required)\n"
            "  --path TEMPLATE           request path, %%s is the channel      [/sse/%%s]\n"
            "  -n, --connections N       clients                              [100]\n"
            "  --channels C              channels ch0..ch<C-1>, round-robin   [1]\n"
            "  --connect-rate R          connections opened per second, 0 = at once [10000]\n"
            "  --connect-timeout SEC     for answers after the last attempt   [10]\n"
            "  --per-process N           clients per load-generator process   [15000]\n"
            "Publishing\n"
            "  --publish-socket PATH     ringcast's feed socket (RESP PUBLISH)\n"
            "  --publish-http URL        HTTP POST, e.g. http://127.0.0.1:8081/pub/%%s\n"
            "  --publish-conns P         publisher connections (channel c: c mod P) [1]\n"
            "  --pipeline D              requests in flight per publisher connection\n"
            "                            [128 with RESP, 1 with HTTP]\n"
            "  --events E                events to publish                    [100]\n"
            "  --rate R                  events per second, 0 = as fast as taken [0]\n"
            "  --size S                  payload bytes                        [100]\n"
            "  --seed X                  seed of the channel of each event    [1]\n"
            "Run\n"
            "  --hold SEC                idle time after subscribing          [0]\n"
            "  --drain-timeout SEC       wait for deliveries after publishing [10]\n"
            "  --timeout SEC             overall limit, then report           [300]\n"
            "  --reconnect-storm         after E/2 events every client reconnects,\n"
            "                            sending Last-Event-ID\n"
            "Server measurements\n"
            "  --server-pid PID          a server process; may be repeated\n"
            "  --server-pids-from-name NAME  every process named NAME (e.g. nginx)\n"
            "\n"
            "Prints a summary and one JSON line. Exit status: 0 when every client was\n"
            "established and received every event once and in order, 1 otherwise, 2 for usage\n"
            "errors, 3 when the run could not be carried out.\n");
}

static _Noreturn void usage_error(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void usage_error(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "loadgen: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fprintf(stderr, " (--help for usage)\n");
    exit(EXIT_USAGE);
}

static uint64_t parse_uint(const char *name, const char *s, uint64_t min, uint64_t max)
{
    char *end;
    errno = 0;
    unsigned long long v = strtoull(s, &end, 10);
    if (!isdigit((unsigned char)*s) || *end || errno || v < min || v > max)
        usage_error("%s wants an integer from %" PRIu64 " to %" PRIu64 ", not '%s'", name, min, max,
                    s);
    return v;
}

/* A non-negative decimal number: seconds or a rate. */
static double parse_number(const char *name, const char *s, double max)
{
    char *end;
    double v = strtod(s, &end);
    if (!isdigit((unsigned char)*s) || *end || !(v >= 0 && v <= max))
        usage_error("%s wants a number from 0 to %g, not '%s'", name, max, s);
    return v;
}

/*
 * Parses "A.B.C.D[:PORT]" into sa and refuses anything outside 127.0.0.0/8: the figures are
 * only meaningful when server and clients share the host, and a load test must not be pointed
 * at someone else's machine by a typo.
 */
static void parse_address(const char *name, const char *s, size_t len, uint16_t default_port,
                          struct sockaddr_in *sa, char *text, size_t text_cap)
{
    char host[32];
    const char *colon = memchr(s, ':', len);
    size_t hlen = colon ? (size_t)(colon - s) : len;
    uint64_t port = default_port;

    if (hlen >= sizeof(host))
        usage_error("%s: bad address '%.*s'", name, (int)len, s);
    memcpy(host, s, hlen);
    host[hlen] = '\0';
    if (colon) {
        char num[8];
        size_t plen = len - hlen - 1;
        if (plen == 0 || plen >= sizeof(num))
            usage_error("%s: bad port in '%.*s'", name, (int)len, s);
        memcpy(num, colon + 1, plen);
        num[plen] = '\0';
        port = parse_uint(name, num, 1, 65535);
    }
    *sa = (struct sockaddr_in){.sin_family = AF_INET, .sin_port = htons((uint16_t)port)};
    if (inet_pton(AF_INET, host, &sa->sin_addr) != 1)
        usage_error("%s: '%s' is not a numeric IPv4 address", name, host);
    if (ntohl(sa->sin_addr.s_addr) >> 24 != 127)
        usage_error("%s: %s is not a loopback address; loadgen only measures servers on this "
                    "host (127.x.y.z)",
                    name, host);
    snprintf(text, text_cap, "%s:%u", host, (unsigned)port);
}

/* Copies a path template, which must start with '/' and hold "%s" once and no other '%'. */
static void parse_template(const char *name, const char *s, char *out)
{
    const char *hole = strstr(s, "%s");
    if (s[0] != '/' || strlen(s) > MAX_TEMPLATE || !hole || strchr(s, '%') != hole ||
        strchr(hole + 2, '%'))
        usage_error("%s wants a path starting with '/' that contains %%s exactly once, not '%s'",
                    name, s);
    strcpy(out, s);
}

/* Writes the template with its "%s" replaced by the channel name. */
static void expand_template(const char *tmpl, const char *channel, char *out, size_t cap)
{
    const char *hole = strstr(tmpl, "%s");
    snprintf(out, cap, "%.*s%s%s", (int)(hole - tmpl), tmpl, channel, hole + 2);
}

/* Adds every process whose name (/proc/PID/comm, 15 bytes at most) is `name`. */
static void add_pids_by_name(const char *name)
{
    DIR *d = opendir("/proc");
    struct dirent *e;
    unsigned found = 0;

    if (!d)
        usage_error("cannot read /proc: %s", strerror(errno));
    while ((e = readdir(d))) {
        char path[300], comm[64];
        if (!isdigit((unsigned char)e->d_name[0]))
            continue;
        snprintf(path, sizeof(path), "/proc/%s/comm", e->d_name);
        FILE *f = fopen(path, "r");
        if (!f)
            continue;
        bool match = false;
        if (fgets(comm, sizeof(comm), f)) {
            comm[strcspn(comm, "\n")] = '\0';
            /* The kernel keeps the first 15 bytes of a process name. */
            match = strncmp(comm, name, 15) == 0 && strlen(comm) == strnlen(name, 15);
        }
        fclose(f);
        pid_t pid = (pid_t)atoi(e->d_name);
        if (match && pid != getpid()) {
            if (opt.nserver_pids == MAX_SERVER_PIDS)
                usage_error("more than %d processes are named '%s'", MAX_SERVER_PIDS, name);
            opt.server_pids[opt.nserver_pids++] = pid;
            found++;
        }
    }
    closedir(d);
    if (!found)
        usage_error("no process is named '%s'", name);
}

static void parse_options(int argc, char **argv)
{
    enum {
        OPT_TARGET = 256,
        OPT_PATH,
        OPT_CHANNELS,
        OPT_CONNECT_RATE,
        OPT_CONNECT_TIMEOUT,
        OPT_PER_PROCESS,
        OPT_PUB_SOCKET,
        OPT_PUB_HTTP,
        OPT_PUB_CONNS,
        OPT_PIPELINE,
        OPT_EVENTS,
        OPT_RATE,
        OPT_SIZE,
        OPT_SEED,
        OPT_HOLD,
        OPT_DRAIN,
        OPT_TIMEOUT,
        OPT_STORM,
        OPT_SERVER_PID,
        OPT_SERVER_NAME,
    };
    static const struct option longopts[] = {
        {"target", required_argument, NULL, OPT_TARGET},
        {"path", required_argument, NULL, OPT_PATH},
        {"connections", required_argument, NULL, 'n'},
        {"channels", required_argument, NULL, OPT_CHANNELS},
        {"connect-rate", required_argument, NULL, OPT_CONNECT_RATE},
        {"connect-timeout", required_argument, NULL, OPT_CONNECT_TIMEOUT},
        {"per-process", required_argument, NULL, OPT_PER_PROCESS},
        {"publish-socket", required_argument, NULL, OPT_PUB_SOCKET},
        {"publish-http", required_argument, NULL, OPT_PUB_HTTP},
        {"publish-conns", required_argument, NULL, OPT_PUB_CONNS},
        {"pipeline", required_argument, NULL, OPT_PIPELINE},
        {"events", required_argument, NULL, OPT_EVENTS},
        {"rate", required_argument, NULL, OPT_RATE},
        {"size", required_argument, NULL, OPT_SIZE},
        {"seed", required_argument, NULL, OPT_SEED},
        {"hold", required_argument, NULL, OPT_HOLD},
        {"drain-timeout", required_argument, NULL, OPT_DRAIN},
        {"timeout", required_argument, NULL, OPT_TIMEOUT},
        {"reconnect-storm", no_argument, NULL, OPT_STORM},
        {"server-pid", required_argument, NULL, OPT_SERVER_PID},
        {"server-pids-from-name", required_argument, NULL, OPT_SERVER_NAME},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *url = NULL;
    int o;

    strcpy(opt.path, "/sse/%s");
    opt.n = 100;
    opt.channels = 1;
    opt.connect_rate = 10000;
    opt.connect_timeout = 10;
    opt.per_process = 15000;
    opt.publish_conns = 1;
    opt.events = 100;
    opt.size = 100;
    opt.seed = 1;
    opt.drain_timeout = 10;
    opt.timeout = 300;
    while ((o = getopt_long(argc, argv, "n:h", longopts, NULL)) != -1) {
        switch (o) {
        case OPT_TARGET:
            parse_address("--target", optarg, strlen(optarg), 0, &opt.target, opt.target_text,
                          sizeof(opt.target_text));
            if (!strchr(optarg, ':'))
                usage_error("--target wants HOST:PORT");
            break;
        case OPT_PATH:
            parse_template("--path", optarg, opt.path);
            break;
        case 'n':
            opt.n = (uint32_t)parse_uint("-n", optarg, 1, 3000000);
            break;
        case OPT_CHANNELS:
            opt.channels = (uint32_t)parse_uint("--channels", optarg, 1, 1000000);
            break;
        case OPT_CONNECT_RATE:
            opt.connect_rate = parse_number("--connect-rate", optarg, 1e7);
            break;
        case OPT_CONNECT_TIMEOUT:
            opt.connect_timeout = parse_number("--connect-timeout", optarg, 3600);
            break;
        case OPT_PER_PROCESS:
            opt.per_process = (uint32_t)parse_uint("--per-process", optarg, 1, 1000000);
            break;
        case OPT_PUB_SOCKET:
            if (strlen(optarg) >= sizeof(((struct sockaddr_un *)0)->sun_path))
                usage_error("--publish-socket: the path is too long for a UNIX socket");
            opt.publish_socket = optarg;
            break;
        case OPT_PUB_HTTP:
            url = optarg;
            break;
        case OPT_PUB_CONNS:
            opt.publish_conns = (uint32_t)parse_uint("--publish-conns", optarg, 1, 64);
            break;
        case OPT_PIPELINE:
            opt.pipeline = (uint32_t)parse_uint("--pipeline", optarg, 1, 65536);
            break;
        case OPT_EVENTS:
            opt.events = parse_uint("--events", optarg, 0, UINT32_MAX);
            break;
        case OPT_RATE:
            opt.rate = parse_number("--rate", optarg, 1e9);
            break;
        case OPT_SIZE:
            opt.size = (uint32_t)parse_uint("--size", optarg, 1, 64 << 20);
            break;
        case OPT_SEED:
            opt.seed = parse_uint("--seed", optarg, 0, UINT64_MAX);
            break;
        case OPT_HOLD:
            opt.hold = parse_number("--hold", optarg, 86400);
            break;
        case OPT_DRAIN:
            opt.drain_timeout = parse_number("--drain-timeout", optarg, 86400);
            break;
        case OPT_TIMEOUT:
            opt.timeout = parse_number("--timeout", optarg, 86400);
            break;
        case OPT_STORM:
            opt.storm = true;
            break;
        case OPT_SERVER_PID:
            if (opt.nserver_pids == MAX_SERVER_PIDS)
                usage_error("at most %d server processes", MAX_SERVER_PIDS);
            opt.server_pids[opt.nserver_pids++] =
                (pid_t)parse_uint("--server-pid", optarg, 1, INT32_MAX);
            break;
        case OPT_SERVER_NAME:
            add_pids_by_name(optarg);
            break;
        case 'h':
            usage(stdout);
            exit(EXIT_CLEAN);
        default:
            usage(stderr);
            exit(EXIT_USAGE);
        }
    }
    if (optind != argc)
        usage_error("unexpected argument '%s'", argv[optind]);
    if (!opt.target_text[0])
        usage_error("--target is required");
    if (url) {
        const char *rest = url + 7, *slash;
        if (strncmp(url, "http://", 7) != 0 || !(slash = strchr(rest, '/')))
            usage_error("--publish-http wants http://127.x.y.z[:PORT]/path-with-%%s");
        parse_address("--publish-http", rest, (size_t)(slash - rest), 80, &opt.publish_addr,
                      opt.publish_host, sizeof(opt.publish_host));
        parse_template("--publish-http", slash, opt.publish_path);
        opt.http = true;
    }
    if (opt.publish_socket && opt.http)
        usage_error("--publish-socket and --publish-http exclude each other");
    if (opt.events > 0 && !opt.publish_socket && !opt.http)
        usage_error("publishing needs --publish-socket or --publish-http (or --events 0)");
    if (opt.storm && opt.events < 2)
        usage_error("--reconnect-storm needs at least 2 events");
    if (!opt.pipeline)
        opt.pipeline = opt.http ? 1 : 128;
    if ((opt.n + opt.per_process - 1) / opt.per_process > MAX_PROCS)
        usage_error("%u clients need more than %d processes; raise --per-process", opt.n,
                    MAX_PROCS);
}

/* ---------------------------------------------------------------------------------------------
 * Utilities: clocks, errors, /proc readings
 */

static pid_t child_pids[MAX_PROCS]; /* 0 once reaped */
static unsigned nchildren;

static uint64_t now_ns(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_MONOTONIC, &ts);
    return (uint64_t)ts.tv_sec * 1000000000u + (uint64_t)ts.tv_nsec;
}

static void sleep_ms(unsigned ms)
{
    struct timespec ts = {ms / 1000, (long)(ms % 1000) * 1000000};
    nanosleep(&ts, NULL);
}

/* Kills every child still running: none may outlive the parent's decision to stop. */
static void kill_children(void)
{
    for (unsigned k = 0; k < nchildren; k++)
        if (child_pids[k] > 0)
            kill(child_pids[k], SIGKILL);
}

static _Noreturn void die(const char *fmt, ...) __attribute__((format(printf, 1, 2)));

static _Noreturn void die(const char *fmt, ...)
{
    va_list ap;
    fprintf(stderr, "loadgen: ");
    va_start(ap, fmt);
    vfprintf(stderr, fmt, ap);
    va_end(ap);
    fputc('\n', stderr);
    kill_children();
    exit(EXIT_FATAL);
}

static void *xrealloc(void *p, size_t size)
{
    p = realloc(p, size);
    if (!p)
        die("out of memory");
    return p;
}

/* Reads a small file (from /proc) into buf as a string; returns false when it cannot. */
static bool read_small_file(const char *path, char *buf, size_t cap)
{
    int fd = open(path, O_RDONLY | O_CLOEXEC);
    if (fd < 0)
        return false;
    ssize_t n = read(fd, buf, cap - 1);
    close(fd);
    if (n < 0)
        return false;
    buf[n] = '\0';
    return true;
}

/* The value in kB of "key:" in a /proc status-like text, in bytes; -1 when absent. */
static int64_t kb_field(const char *text, const char *key)
{
    const char *p = strstr(text, key);
    return p ? (int64_t)strtoll(p + strlen(key), NULL, 10) * 1024 : -1;
}

/* VmRSS summed over the server processes, in bytes; -1 when none is given or readable. */
static int64_t server_rss(void)
{
    int64_t sum = -1;
    for (unsigned i = 0; i < opt.nserver_pids; i++) {
        char path[64], text[4096];
        snprintf(path, sizeof(path), "/proc/%d/status", (int)opt.server_pids[i]);
        int64_t rss = read_small_file(path, text, sizeof(text)) ? kb_field(text, "\nVmRSS:") : -1;
        if (rss >= 0)
            sum = (sum < 0 ? 0 : sum) + rss;
    }
    return sum;
}

/* The kernel's slab memory (SReclaimable + SUnreclaim), in bytes; -1 when unreadable. */
static int64_t kernel_slab(void)
{
    char text[8192];
    if (!read_small_file("/proc/meminfo", text, sizeof(text)))
        return -1;
    int64_t r = kb_field(text, "\nSReclaimable:"), u = kb_field(text, "\nSUnreclaim:");
    return r < 0 || u < 0 ? -1 : r + u;
}

/* User plus system CPU seconds of a process, all its threads; -1 when it is gone. */
static double process_cpu(pid_t pid)
{
    char path[64], text[1024];
    unsigned long utime, stime;

    snprintf(path, sizeof(path), "/proc/%d/stat", (int)pid);
    if (!read_small_file(path, text, sizeof(text)))
        return -1;
    /* The name may hold spaces and parentheses; the fields after the last ')' are fixed:
     * state (3), five signed (4-8), five unsigned (9-13), then utime (14) and stime (15). */
    const char *p = strrchr(text, ')');
    if (!p ||
        sscanf(p + 2, "%*c %*d %*d %*d %*d %*d %*u %*u %*u %*u %*u %lu %lu", &utime, &stime) != 2)
        return -1;
    return (double)(utime + stime) / (double)sysconf(_SC_CLK_TCK);
}

/* Server CPU seconds summed over the server processes; -1 when none is readable. */
static double server_cpu(void)
{
    double sum = -1;
    for (unsigned i = 0; i < opt.nserver_pids; i++) {
        double s = process_cpu(opt.server_pids[i]);
        if (s >= 0)
            sum = (sum < 0 ? 0 : sum) + s;
    }
    return sum;
}

/* Busy and total time of all CPUs, in ticks, from the first line of /proc/stat. */
static void machine_cpu(uint64_t *busy, uint64_t *total)
{
    char text[512];
    unsigned long long v[8] = {0};
    *busy = *total = 0;
    if (!read_small_file("/proc/stat", text, sizeof(text)) ||
        sscanf(text, "cpu %llu %llu %llu %llu %llu %llu %llu %llu", &v[0], &v[1], &v[2], &v[3],
               &v[4], &v[5], &v[6], &v[7]) != 8)
        return;
    /* user nice system idle iowait irq softirq steal: idle and iowait are not busy. */
    *busy = v[0] + v[1] + v[2] + v[5] + v[6] + v[7];
    *total = *busy + v[3] + v[4];
}

/* The channel of the j-th event: deterministic from the seed, so children can recount it. */
static uint32_t channel_of_event(uint64_t j)
{
    if (opt.channels == 1)
        return 0;
    uint64_t x = opt.seed + (j + 1) * 0x9e3779b97f4a7c15ULL; /* splitmix64 */
    x = (x ^ (x >> 30)) * 0xbf58476d1ce4e5b9ULL;
    x = (x ^ (x >> 27)) * 0x94d049bb133111ebULL;
    return (uint32_t)((x ^ (x >> 31)) % opt.channels);
}

/* ---------------------------------------------------------------------------------------------
 * Latency histogram: log-linear, 1 us resolution below 128 us, then 64 buckets per power of two
 * (at most 1/64 = 1.6 % too high), up to 60 s; larger values land in the last bucket.
 */

#define HIST_SUB_BITS 7
#define HIST_SUB      (1u << HIST_SUB_BITS)
#define HIST_HALF     (HIST_SUB / 2)
#define HIST_MAX_US   60000000ULL /* below 2^26 */
#define HIST_BUCKETS  (HIST_SUB + (26 - HIST_SUB_BITS) * HIST_HALF)

struct hist {
    uint64_t count[HIST_BUCKETS];
    uint64_t max_us; /* exact */
};

static unsigned hist_bucket(uint64_t us)
{
    if (us < HIST_SUB)
        return (unsigned)us;
    unsigned mag = 63u - (unsigned)__builtin_clzll(us); /* us lies in [2^mag, 2^(mag+1)) */
    unsigned shift = mag - (HIST_SUB_BITS - 1);         /* keeps the top 7 bits */
    return HIST_SUB + (mag - HIST_SUB_BITS) * HIST_HALF + (unsigned)(us >> shift) - HIST_HALF;
}

/* The highest value that falls into bucket i. */
static uint64_t hist_bucket_top(unsigned i)
{
    if (i < HIST_SUB)
        return i;
    unsigned j = i - HIST_SUB, mag = HIST_SUB_BITS + j / HIST_HALF;
    unsigned shift = mag - (HIST_SUB_BITS - 1);
    return ((uint64_t)(HIST_HALF + j % HIST_HALF) << shift) + (1ULL << shift) - 1;
}

static void hist_add(struct hist *h, uint64_t us)
{
    if (us > h->max_us)
        h->max_us = us;
    h->count[hist_bucket(us < HIST_MAX_US ? us : HIST_MAX_US)]++;
}

static void hist_merge(struct hist *into, const struct hist *h)
{
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        into->count[i] += h->count[i];
    if (h->max_us > into->max_us)
        into->max_us = h->max_us;
}

/* The q-quantile (0 < q <= 1), as the top of its bucket but never above the maximum. */
static uint64_t hist_quantile(const struct hist *h, double q)
{
    uint64_t total = 0, seen = 0;
    for (unsigned i = 0; i < HIST_BUCKETS; i++)
        total += h->count[i];
    uint64_t rank = (uint64_t)ceil(q * (double)total);
    for (unsigned i = 0; i < HIST_BUCKETS; i++) {
        seen += h->count[i];
        if (seen >= rank && seen > 0) {
            uint64_t top = hist_bucket_top(i);
            return top < h->max_us ? top : h->max_us;
        }
    }
    return 0;
}

/* ---------------------------------------------------------------------------------------------
 * The board: memory shared by the parent and its children.
 *
 * Each child_board field has one writer. Release stores and acquire loads make every field's
 * value well defined while both processes run, and let a flag (complete, settled_ns) publish
 * the fields written before it. The totals at the end are read only after the child has exited.
 */

struct child_board {
    /* Live, written as things happen. */
    uint32_t established;  /* clients that got a 200 head in phase 1 */
    uint32_t failed;       /* clients that did not; broken down in the four below */
    uint32_t fail_connect; /* socket, bind or connect failed */
    uint32_t fail_http;    /* a status other than 200, or an unreadable head */
    uint32_t fail_closed;  /* closed by the server before the head was complete */
    uint32_t fail_timeout; /* no answer within --connect-timeout */
    int32_t first_errno;   /* of the first connect failure */
    int32_t first_status;  /* of the first non-200 answer */
    uint32_t disconnects;  /* streams that ended while they should have been open */
    uint32_t resumed;      /* storm: clients streaming again */
    uint32_t resume_failed;
    uint32_t complete;         /* every client has every published event or is gone */
    uint64_t settled_ns;       /* when the last client of phase 1 was established or failed */
    uint64_t resumed_ns;       /* storm: when the last client was streaming again */
    uint64_t last_delivery_ns; /* when an event last arrived */
    /* Totals, written once before the child exits. */
    uint64_t deliveries; /* events received for the first time */
    uint64_t lost, dup, ooo;
    uint64_t undelivered; /* of the lost: still due to connected clients at the end */
    uint64_t malformed;   /* data lines that are not "<seq> <ns> ..." */
    struct hist hist;     /* latency of every first delivery; filled as events arrive */
};

struct shared {
    uint64_t start_ns;  /* when the children began to connect */
    uint64_t published; /* events published, set before CMD_FINAL */
};

#define board_set(field, v) __atomic_store_n(&(field), (v), __ATOMIC_RELEASE)
#define board_add(field, n) board_set(field, (field) + (n)) /* by the field's only writer */
#define board_get(field)    __atomic_load_n(&(field), __ATOMIC_ACQUIRE)

static struct shared *shared;
static struct child_board *boards; /* one per child */
static uint32_t *subs;             /* per channel: streams subscribed right now, all children */

static void *shared_alloc(size_t size)
{
    void *p = mmap(NULL, size, PROT_READ | PROT_WRITE, MAP_SHARED | MAP_ANONYMOUS, -1, 0);
    if (p == MAP_FAILED)
        die("mmap of %zu bytes: %s", size, strerror(errno));
    return p;
}

/* ---------------------------------------------------------------------------------------------
 * Text helpers for HTTP heads and event streams
 */

/* If line[0..len) is header field `name` (any case), sets its trimmed value and returns true. */
static bool header_is(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || strncasecmp(line, name, n) != 0)
        return false;
    const char *v = line + n + 1, *end = line + len;
    while (v < end && (*v == ' ' || *v == '\t'))
        v++;
    while (end > v && (end[-1] == ' ' || end[-1] == '\t' || end[-1] == '\r'))
        end--;
    *value = v;
    *value_len = (size_t)(end - v);
    return true;
}

static bool contains_nocase(const char *s, size_t len, const char *word)
{
    size_t n = strlen(word);
    for (size_t i = 0; i + n <= len; i++)
        if (strncasecmp(s + i, word, n) == 0)
            return true;
    return false;
}

/* If line[0..len) is the SSE field `name`, sets its value (one leading space dropped). */
static bool sse_field(const char *line, size_t len, const char *name, const char **value,
                      size_t *value_len)
{
    size_t n = strlen(name);
    if (len <= n || line[n] != ':' || memcmp(line, name, n) != 0)
        return false;
    size_t skip = n + 1 + (len > n + 1 && line[n + 1] == ' ');
    *value = line + skip;
    *value_len = len - skip;
    return true;
}

/* Parses decimal digits at *p (at least one), advancing *p past them. */
static bool parse_digits(const char **p, const char *end, uint64_t *v)
{
    const char *s = *p;
    *v = 0;
    while (s < end && isdigit((unsigned char)*s) && *v < UINT64_MAX / 10)
        *v = *v * 10 + (uint64_t)(*s++ - '0');
    if (s == *p)
        return false;
    *p = s;
    return true;
}

/* The status code of "HTTP/1.x NNN ...", or 0 when the line is not a status line. */
static int status_code(const char *line, size_t len)
{
    if (len < 12 || memcmp(line, "HTTP/1.", 7) != 0 || line[8] != ' ' ||
        !isdigit((unsigned char)line[9]) || !isdigit((unsigned char)line[10]) ||
        !isdigit((unsigned char)line[11]))
        return 0;
    return (line[9] - '0') * 100 + (line[10] - '0') * 10 + (line[11] - '0');
}

/* ---------------------------------------------------------------------------------------------
 * Clients (child processes)
 */

enum client_state {
    CL_IDLE = 0,   /* no connection yet */
    CL_CONNECTING, /* TCP connect in progress */
    CL_STATUS,     /* request sent, waiting for the status line */
    CL_HEADERS,    /* reading the response header fields */
    CL_STREAM,     /* reading the event stream */
    CL_GONE,       /* failed or disconnected; nothing open */
};

/* Decoding of a chunked body; CH_NONE when the body is not chunked. */
enum chunk_state { CH_NONE = 0, CH_SIZE, CH_EXT, CH_DATA, CH_CRLF };

enum client_flag {
    CF_ESTABLISHED = 1 << 0, /* got a 200 head in phase 1: every event is expected */
    CF_COMPLETE = 1 << 1,    /* out of the drain count: has every event or is gone */
    CF_RECONNECT = 1 << 2,   /* storm: the current connection is a resumption */
};

/* A partial line kept from one read to the next. */
struct carry {
    uint32_t len, cap;
    char data[];
};

/*
 * Storm mode: what a browser's EventSource keeps: the id buffer, the id of the last dispatched
 * event, and the event being read, which counts only once a blank line dispatches it.
 */
struct resume {
    uint8_t len, pending_len;
    bool has_event; /* a data line of the event being read has arrived */
    uint32_t event_seq;
    uint64_t event_sent_ns;
    char id[ID_MAX], pending[ID_MAX];
};

/* One client: 40 bytes, plus a carry only while a line is split across reads. */
struct client {
    int fd;
    uint32_t last;       /* highest sequence number received */
    uint64_t window;     /* bit i set: sequence number last-1-i was received */
    uint32_t chunk_left; /* CH_SIZE: the size read so far; CH_DATA: bytes left in the chunk */
    uint8_t state, chunk, flags;
    struct carry *carry;
    struct resume *resume; /* storm mode only, once an id or data line arrived */
};

enum end_reason { END_CONNECT, END_HTTP, END_CLOSED, END_TIMEOUT, END_DISCONNECT };

struct child {
    unsigned k;
    uint32_t first, count; /* its clients are [first, first + count) of all N */
    struct client *clients;
    struct child_board *me;
    int ep, cmd_fd;
    char *buf;        /* READ_BUF bytes, shared by all clients */
    size_t max_line;  /* longer lines end the connection */
    double rate;      /* connections per second for this process */
    uint64_t now;     /* CLOCK_MONOTONIC, refreshed for every read */
    uint32_t opened;  /* clients whose first connection has been started */
    uint32_t waiting; /* connections started and not yet streaming or ended */
    uint64_t last_attempt_ns;
    uint32_t reconnecting; /* storm: clients that were streaming when it began */
    bool final;            /* the published count is known */
    uint32_t *expected;    /* per channel: events published, once final */
    uint32_t incomplete;   /* established clients still missing events, once final */
    uint64_t deliveries, lost, dup, ooo, malformed;
};

static uint32_t client_channel(const struct child *ch, const struct client *c)
{
    return (ch->first + (uint32_t)(c - ch->clients)) % opt.channels;
}

static void epoll_set(struct child *ch, struct client *c, int op, uint32_t events)
{
    struct epoll_event ev = {.events = events, .data.u32 = (uint32_t)(c - ch->clients)};
    if (epoll_ctl(ch->ep, op, c->fd, &ev) < 0)
        die("epoll_ctl: %s", strerror(errno));
}

/* Records when the last client of phase 1 was established or failed. */
static void phase1_progress(struct child *ch)
{
    if (ch->me->established + ch->me->failed == ch->count)
        board_set(ch->me->settled_ns, ch->now);
}

/* Records when the last client of the storm was streaming again, or failed to. */
static void storm_progress(struct child *ch)
{
    if (ch->me->resumed + ch->me->resume_failed == ch->reconnecting)
        board_set(ch->me->resumed_ns, ch->now);
}

/* Takes a client out of the drain count once it has every published event or never will. */
static void settle(struct child *ch, struct client *c)
{
    if (!ch->final || (c->flags & CF_COMPLETE) || !(c->flags & CF_ESTABLISHED))
        return;
    if (c->state != CL_GONE && c->last < ch->expected[client_channel(ch, c)])
        return;
    c->flags |= CF_COMPLETE;
    if (--ch->incomplete == 0)
        board_set(ch->me->complete, 1);
}

/* Closes a client's connection and counts why; its later events will count as lost. */
static void client_end(struct child *ch, struct client *c, enum end_reason why, int detail)
{
    struct child_board *me = ch->me;

    if (c->state == CL_STREAM) {
        __atomic_fetch_sub(&subs[client_channel(ch, c)], 1, __ATOMIC_RELAXED);
        board_add(me->disconnects, 1);
    } else {
        if (c->state >= CL_CONNECTING)
            ch->waiting--;
        if (c->flags & CF_RECONNECT) {
            board_add(me->resume_failed, 1);
            storm_progress(ch);
        } else {
            if (why == END_CONNECT) {
                if (!me->fail_connect)
                    board_set(me->first_errno, detail);
                board_add(me->fail_connect, 1);
            } else if (why == END_HTTP) {
                if (!me->fail_http)
                    board_set(me->first_status, detail);
                board_add(me->fail_http, 1);
            } else if (why == END_TIMEOUT) {
                board_add(me->fail_timeout, 1);
            } else {
                board_add(me->fail_closed, 1);
            }
            board_add(me->failed, 1);
            phase1_progress(ch);
        }
    }
    if (c->fd >= 0)
        close(c->fd);
    c->fd = -1;
    free(c->carry);
    c->carry = NULL;
    if (c->resume)
        c->resume->has_event = false; /* never dispatched: gone with the stream */
    c->state = CL_GONE;
    settle(ch, c);
}

/*
 * Starts a connection from this process's source address. Generation 1 (the storm) uses
 * 127.0.1.x, because the sockets just closed hold their ports in TIME_WAIT on 127.0.0.x.
 */
static void client_connect(struct child *ch, struct client *c, unsigned gen)
{
    struct sockaddr_in src = {
        .sin_family = AF_INET,
        .sin_addr.s_addr = htonl(0x7f000000u | gen << 8 | (2 + ch->k)),
    };
    int one = 1;

    c->state = CL_CONNECTING;
    ch->waiting++;
    c->fd = socket(AF_INET, SOCK_STREAM | SOCK_NONBLOCK | SOCK_CLOEXEC, 0);
    if (c->fd < 0) {
        client_end(ch, c, END_CONNECT, errno);
        return;
    }
    /* The port is then chosen by connect() for this destination only, not reserved for all. */
    setsockopt(c->fd, IPPROTO_IP, IP_BIND_ADDRESS_NO_PORT, &one, sizeof(one));
    if (bind(c->fd, (struct sockaddr *)&src, sizeof(src)) < 0 ||
        (connect(c->fd, (struct sockaddr *)&opt.target, sizeof(opt.target)) < 0 &&
         errno != EINPROGRESS)) {
        client_end(ch, c, END_CONNECT, errno);
        return;
    }
    epoll_set(ch, c, EPOLL_CTL_ADD, EPOLLOUT);
}

/* The connection is up (or failed): send the request, then wait for the answer. */
static void client_writable(struct child *ch, struct client *c)
{
    char path[MAX_TEMPLATE + 32], name[16], req[MAX_TEMPLATE + 256], last_id[ID_MAX + 20] = "";
    int err = 0;
    socklen_t len = sizeof(err);

    if (getsockopt(c->fd, SOL_SOCKET, SO_ERROR, &err, &len) < 0 || err) {
        client_end(ch, c, END_CONNECT, err ? err : errno);
        return;
    }
    snprintf(name, sizeof(name), "ch%u", client_channel(ch, c));
    expand_template(opt.path, name, path, sizeof(path));
    if (c->resume && c->resume->len)
        snprintf(last_id, sizeof(last_id), "Last-Event-ID: %.*s\r\n", c->resume->len,
                 c->resume->id);
    int n = snprintf(req, sizeof(req),
                     "GET %s HTTP/1.1\r\nHost: %s\r\nAccept: text/event-stream\r\n"
                     "Cache-Control: no-cache\r\n%s\r\n",
                     path, opt.target_text, last_id);
    /* A fresh socket's buffer takes a few hundred bytes whole; anything else is a failure. */
    if (write(c->fd, req, (size_t)n) != n) {
        client_end(ch, c, END_CONNECT, errno);
        return;
    }
    epoll_set(ch, c, EPOLL_CTL_MOD, EPOLLIN);
    c->state = CL_STATUS;
}

/* The head is complete with a 200: the client is subscribed. */
static void client_streaming(struct child *ch, struct client *c)
{
    c->state = CL_STREAM;
    ch->waiting--;
    __atomic_fetch_add(&subs[client_channel(ch, c)], 1, __ATOMIC_RELAXED);
    if (c->flags & CF_RECONNECT) {
        board_add(ch->me->resumed, 1);
        storm_progress(ch);
    } else {
        c->flags |= CF_ESTABLISHED;
        board_add(ch->me->established, 1);
        phase1_progress(ch);
    }
}

/*
 * Counts one event by its sequence number. A gap counts as lost at once; an older number that
 * arrives later takes its loss back (out of order) unless the 64-event window says it was
 * already received (duplicate). Older than the window it is assumed to be a late arrival.
 */
static void on_event(struct child *ch, struct client *c, uint32_t seq, uint64_t sent_ns)
{
    if (seq > c->last) {
        uint32_t d = seq - c->last;
        ch->lost += d - 1;
        c->window = d > 64 ? 0 : d == 64 ? 1ULL << 63 : (c->window << d) | (1ULL << (d - 1));
        c->last = seq;
    } else {
        uint32_t back = c->last - seq;
        if (back == 0 || (back <= 64 && (c->window >> (back - 1)) & 1)) {
            ch->dup++;
            return;
        }
        if (back <= 64)
            c->window |= 1ULL << (back - 1);
        ch->ooo++;
        ch->lost--;
    }
    ch->deliveries++;
    hist_add(&ch->me->hist, ch->now > sent_ns ? (ch->now - sent_ns) / 1000 : 0);
    board_set(ch->me->last_delivery_ns, ch->now);
    settle(ch, c);
}

static struct resume *resume_of(struct client *c)
{
    if (!c->resume) {
        c->resume = calloc(1, sizeof(*c->resume));
        if (!c->resume)
            die("out of memory");
    }
    return c->resume;
}

/*
 * A data: line. Without a storm the event counts at once. In storm mode it counts when the
 * blank line dispatches it, as a browser fires `message` only then: an event cut off by the
 * storm was never seen, so its replay after Last-Event-ID is its first delivery.
 */
static void on_data_line(struct child *ch, struct client *c, const char *v, size_t len)
{
    const char *p = v, *end = v + len;
    uint64_t seq, sent;

    if (!parse_digits(&p, end, &seq) || p == end || *p++ != ' ' || !parse_digits(&p, end, &sent) ||
        seq == 0 || seq > UINT32_MAX) {
        ch->malformed++;
        return;
    }
    if (!opt.storm) {
        on_event(ch, c, (uint32_t)seq, sent);
        return;
    }
    struct resume *r = resume_of(c);
    if (r->has_event)
        on_event(ch, c, r->event_seq, r->event_sent_ns); /* two data lines: both count */
    r->has_event = true;
    r->event_seq = (uint32_t)seq;
    r->event_sent_ns = sent;
}

/* An id: line, kept in storm mode the way a browser keeps it for Last-Event-ID. */
static void on_id_line(struct client *c, const char *v, size_t len)
{
    resume_of(c);
    /* An id too long to keep is forgotten rather than sent back truncated. */
    c->resume->pending_len = len <= ID_MAX ? (uint8_t)len : 0;
    memcpy(c->resume->pending, v, c->resume->pending_len);
}

/* One complete line, without its line ending, in whichever part of the response it is. */
static void on_line(struct child *ch, struct client *c, const char *s, size_t len)
{
    const char *v;
    size_t vlen;

    if (len && s[len - 1] == '\r')
        len--;
    switch (c->state) {
    case CL_STATUS: {
        int status = status_code(s, len);
        if (status == 200)
            c->state = CL_HEADERS;
        else
            client_end(ch, c, END_HTTP, status);
        break;
    }
    case CL_HEADERS:
        if (len == 0)
            client_streaming(ch, c);
        else if (header_is(s, len, "transfer-encoding", &v, &vlen) &&
                 contains_nocase(v, vlen, "chunked"))
            c->chunk = CH_SIZE;
        break;
    case CL_STREAM:
        if (len == 0) {
            /* The event is dispatched: its id becomes the one to resume from. */
            if (c->resume) {
                c->resume->len = c->resume->pending_len;
                memcpy(c->resume->id, c->resume->pending, c->resume->len);
                if (c->resume->has_event) {
                    c->resume->has_event = false;
                    on_event(ch, c, c->resume->event_seq, c->resume->event_sent_ns);
                }
            }
        } else if (sse_field(s, len, "data", &v, &vlen)) {
            on_data_line(ch, c, v, vlen);
        } else if (opt.storm && sse_field(s, len, "id", &v, &vlen)) {
            on_id_line(c, v, vlen);
        }
        /* Comments (heartbeats) and other fields carry nothing to measure. */
        break;
    }
}

/* Appends to the client's partial line; false (and the client ended) when it grows too long. */
static bool carry_append(struct child *ch, struct client *c, const char *p, size_t n)
{
    struct carry *k = c->carry;
    size_t need = (k ? k->len : 0) + n;

    if (need > ch->max_line) {
        ch->malformed++;
        client_end(ch, c, c->state == CL_STREAM ? END_DISCONNECT : END_HTTP, 0);
        return false;
    }
    if (!k || need > k->cap) {
        size_t cap = k ? k->cap : 256;
        while (cap < need)
            cap *= 2;
        k = xrealloc(k, sizeof(*k) + cap);
        if (!c->carry)
            k->len = 0;
        k->cap = (uint32_t)cap;
        c->carry = k;
    }
    memcpy(k->data + k->len, p, n);
    k->len += (uint32_t)n;
    return true;
}

/*
 * Splits bytes into lines for on_line(); a line without its end yet is carried over. With
 * `head` set it stops right after the head's last line, so that the caller can decode the body
 * as chunked from there. Returns the bytes consumed.
 */
static size_t split_lines(struct child *ch, struct client *c, const char *p, size_t n, bool head)
{
    size_t used = 0;

    while (used < n && c->state != CL_GONE) {
        const char *start = p + used, *nl = memchr(start, '\n', n - used);
        if (!nl) {
            carry_append(ch, c, start, n - used);
            return n;
        }
        size_t len = (size_t)(nl - start);
        used += len + 1;
        if (c->carry) {
            if (!carry_append(ch, c, start, len))
                return n;
            struct carry *k = c->carry;
            c->carry = NULL;
            on_line(ch, c, k->data, k->len);
            free(k);
        } else {
            on_line(ch, c, start, len);
        }
        if (head && c->state >= CL_STREAM)
            break;
    }
    return used;
}

static uint32_t hex_digit(char b)
{
    return isdigit((unsigned char)b) ? (uint32_t)(b - '0')
                                     : (uint32_t)(tolower((unsigned char)b) - 'a' + 10);
}

/* Decodes a chunked body: the chunks' data goes to split_lines(), the framing is dropped. */
static void dechunk(struct child *ch, struct client *c, const char *p, size_t n)
{
    size_t i = 0;

    while (i < n && c->state == CL_STREAM) {
        if (c->chunk == CH_DATA) {
            size_t take = n - i < c->chunk_left ? n - i : c->chunk_left;
            split_lines(ch, c, p + i, take, false);
            i += take;
            c->chunk_left -= (uint32_t)take;
            if (c->chunk_left == 0)
                c->chunk = CH_CRLF;
            continue;
        }
        char b = p[i++];
        if (b == '\n') {
            if (c->chunk == CH_CRLF) {
                c->chunk = CH_SIZE;
                c->chunk_left = 0;
            } else if (c->chunk_left == 0) {
                client_end(ch, c, END_DISCONNECT, 0); /* the last chunk: the stream is over */
            } else {
                c->chunk = CH_DATA;
            }
        } else if (c->chunk == CH_SIZE && isxdigit((unsigned char)b)) {
            if (c->chunk_left >= 1u << 27) {
                ch->malformed++;
                client_end(ch, c, END_DISCONNECT, 0);
                return;
            }
            c->chunk_left = c->chunk_left * 16 + hex_digit(b);
        } else if (c->chunk == CH_SIZE && b != '\r') {
            c->chunk = CH_EXT; /* chunk extensions run to the end of the line */
        }
    }
}

/* Bytes read from a client: the head line by line, then the body, chunked or not. */
static void consume(struct child *ch, struct client *c, const char *p, size_t n)
{
    if (c->state < CL_STREAM) {
        size_t used = split_lines(ch, c, p, n, true);
        p += used;
        n -= used;
    }
    if (n == 0 || c->state != CL_STREAM)
        return;
    if (c->chunk != CH_NONE)
        dechunk(ch, c, p, n);
    else
        split_lines(ch, c, p, n, false);
}

static void client_readable(struct child *ch, struct client *c)
{
    ssize_t n = read(c->fd, ch->buf, READ_BUF);
    if (n < 0 && (errno == EAGAIN || errno == EINTR))
        return;
    if (n <= 0) {
        client_end(ch, c, c->state == CL_STREAM ? END_DISCONNECT : END_CLOSED, 0);
        return;
    }
    ch->now = now_ns();
    consume(ch, c, ch->buf, (size_t)n);
}

/* Starts the connections that the connect rate allows by now. */
static void open_due(struct child *ch)
{
    if (ch->opened == ch->count)
        return;
    uint64_t due = ch->count;
    if (opt.connect_rate > 0)
        due = (uint64_t)((double)(ch->now - shared->start_ns) / NS * ch->rate) + 1;
    while (ch->opened < ch->count && ch->opened < due)
        client_connect(ch, &ch->clients[ch->opened++], 0);
    if (ch->opened == ch->count)
        ch->last_attempt_ns = ch->now;
}

/* Fails the connections still unanswered --connect-timeout after the last one was started. */
static void expire_waiting(struct child *ch)
{
    if (!ch->waiting || ch->opened < ch->count ||
        (double)(ch->now - ch->last_attempt_ns) < opt.connect_timeout * NS)
        return;
    for (uint32_t i = 0; i < ch->opened; i++) {
        struct client *c = &ch->clients[i];
        if (c->state >= CL_CONNECTING && c->state < CL_STREAM)
            client_end(ch, c, END_TIMEOUT, 0);
    }
}

/*
 * CMD_STORM: every stream closes and reconnects at once, sending the id of the last event it
 * saw, as browsers do after a network failure. Sequence tracking carries on across it.
 */
static void storm(struct child *ch)
{
    for (uint32_t i = 0; i < ch->opened; i++) {
        struct client *c = &ch->clients[i];
        if (c->state != CL_STREAM)
            continue;
        __atomic_fetch_sub(&subs[client_channel(ch, c)], 1, __ATOMIC_RELAXED);
        close(c->fd);
        c->fd = -1;
        free(c->carry);
        c->carry = NULL;
        /* Like a browser's new parser: the cut event is dropped, and the id buffer starts
           from the last dispatched id. */
        if (c->resume) {
            c->resume->has_event = false;
            c->resume->pending_len = c->resume->len;
            memcpy(c->resume->pending, c->resume->id, c->resume->len);
        }
        c->chunk = CH_NONE;
        c->chunk_left = 0;
        c->state = CL_IDLE;
        c->flags |= CF_RECONNECT;
        ch->reconnecting++;
    }
    /* All are counted first, so that an early failure cannot look like the storm's end. */
    for (uint32_t i = 0; i < ch->opened; i++)
        if (ch->clients[i].state == CL_IDLE)
            client_connect(ch, &ch->clients[i], 1);
    ch->last_attempt_ns = ch->now;
    storm_progress(ch);
}

/* CMD_FINAL: the publisher is done; count what each channel should have received. */
static void final(struct child *ch)
{
    uint64_t published = board_get(shared->published);
    for (uint64_t j = 0; j < published; j++)
        ch->expected[channel_of_event(j)]++;
    ch->final = true;
    for (uint32_t i = 0; i < ch->opened; i++)
        if (ch->clients[i].flags & CF_ESTABLISHED)
            ch->incomplete++;
    for (uint32_t i = 0; i < ch->opened; i++)
        settle(ch, &ch->clients[i]);
    if (ch->incomplete == 0)
        board_set(ch->me->complete, 1);
}

/* CMD_QUIT: counts what never arrived as lost, leaves the totals on the board and exits. */
static _Noreturn void child_finish(struct child *ch)
{
    for (uint32_t i = 0; i < ch->opened; i++) {
        struct client *c = &ch->clients[i];
        uint32_t expected = ch->expected[client_channel(ch, c)];
        if ((c->flags & CF_ESTABLISHED) && c->last < expected) {
            ch->lost += expected - c->last;
            if (c->state == CL_STREAM)
                ch->me->undelivered += expected - c->last;
        }
    }
    ch->me->deliveries = ch->deliveries;
    ch->me->lost = ch->lost;
    ch->me->dup = ch->dup;
    ch->me->ooo = ch->ooo;
    ch->me->malformed = ch->malformed;
    _exit(EXIT_CLEAN);
}

static void on_commands(struct child *ch)
{
    char cmds[16];
    ssize_t n = read(ch->cmd_fd, cmds, sizeof(cmds));
    if (n == 0)
        _exit(EXIT_FATAL); /* the parent is gone */
    for (ssize_t i = 0; i < n; i++) {
        if (cmds[i] == CMD_STORM)
            storm(ch);
        else if (cmds[i] == CMD_FINAL)
            final(ch);
        else if (cmds[i] == CMD_QUIT)
            child_finish(ch);
    }
}

/* A child process: connects clients [first, first + count) and reads their streams. */
static _Noreturn void child_main(unsigned k, uint32_t first, uint32_t count, int cmd_fd,
                                 pid_t parent)
{
    static char buf[READ_BUF];
    struct child ch = {
        .k = k,
        .first = first,
        .count = count,
        .me = &boards[k],
        .cmd_fd = cmd_fd,
        .buf = buf,
        .max_line = opt.size + 4096,
        .rate = opt.connect_rate * count / opt.n,
        .now = now_ns(),
    };
    struct epoll_event evs[1024];

    nchildren = 0; /* the siblings' pids came with the fork; they are not this process's */
    if (prctl(PR_SET_PDEATHSIG, SIGKILL) < 0 || getppid() != parent)
        _exit(EXIT_FATAL);
    ch.clients = calloc(count, sizeof(*ch.clients));
    ch.expected = calloc(opt.channels, sizeof(*ch.expected));
    ch.ep = epoll_create1(EPOLL_CLOEXEC);
    if (!ch.clients || !ch.expected || ch.ep < 0)
        die("child %u: cannot set up: %s", k, strerror(errno));
    for (uint32_t i = 0; i < count; i++)
        ch.clients[i].fd = -1;
    struct epoll_event cmd = {.events = EPOLLIN, .data.u32 = CMD_TAG};
    if (epoll_ctl(ch.ep, EPOLL_CTL_ADD, cmd_fd, &cmd) < 0)
        die("epoll_ctl: %s", strerror(errno));

    for (;;) {
        int n = epoll_wait(ch.ep, evs, 1024, ch.opened < ch.count ? 1 : 50);
        bool commands = false;
        ch.now = now_ns();
        for (int i = 0; i < n; i++) {
            if (evs[i].data.u32 == CMD_TAG) {
                commands = true;
                continue;
            }
            struct client *c = &ch.clients[evs[i].data.u32];
            if (c->state == CL_CONNECTING)
                client_writable(&ch, c);
            else if (c->state >= CL_STATUS && c->state <= CL_STREAM)
                client_readable(&ch, c);
        }
        /* After the batch: a storm reuses client slots that later entries may still name. */
        if (commands)
            on_commands(&ch);
        open_due(&ch);
        expire_waiting(&ch);
    }
}

/* ---------------------------------------------------------------------------------------------
 * Publisher (parent): RESP PUBLISH to ringcast's feed, or HTTP POST for other servers
 */

struct pubconn {
    int fd;
    char *out; /* bytes for the socket: [out_off, out_len) */
    size_t out_off, out_len, out_cap;
    char *in; /* replies not yet parsed */
    size_t in_len, in_cap;
    uint32_t *expect; /* ring of `pipeline` entries: subscribers each reply should count */
    uint32_t expect_head, inflight;
};

struct publisher {
    struct pubconn *conns;
    int ep;
    uint32_t *seq; /* per channel: the sequence number of its latest event */
    char *payload; /* scratch for one payload */
    uint64_t published, replies, errors, short_replies, stalls;
    uint64_t first_ns, last_ns; /* when the first and the latest event were queued */
    char first_error[160];
};

static int publisher_connect(void)
{
    int fd, one = 1;
    if (opt.http) {
        fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&opt.publish_addr, sizeof(opt.publish_addr)))
            die("cannot connect to the HTTP publisher at %s: %s", opt.publish_host,
                strerror(errno));
        setsockopt(fd, IPPROTO_TCP, TCP_NODELAY, &one, sizeof(one));
    } else {
        struct sockaddr_un sa = {.sun_family = AF_UNIX};
        strcpy(sa.sun_path, opt.publish_socket);
        fd = socket(AF_UNIX, SOCK_STREAM | SOCK_CLOEXEC, 0);
        if (fd < 0 || connect(fd, (struct sockaddr *)&sa, sizeof(sa)))
            die("cannot connect to the feed socket %s: %s", opt.publish_socket, strerror(errno));
    }
    fcntl(fd, F_SETFL, fcntl(fd, F_GETFL) | O_NONBLOCK);
    return fd;
}

/* Opens the publisher connections; done before any client connects, so that a mistake costs
 * nothing. */
static void publisher_open(struct publisher *p)
{
    p->conns = calloc(opt.publish_conns, sizeof(*p->conns));
    p->seq = calloc(opt.channels, sizeof(*p->seq));
    p->payload = malloc(opt.size + 64);
    p->ep = epoll_create1(EPOLL_CLOEXEC);
    if (!p->conns || !p->seq || !p->payload || p->ep < 0)
        die("cannot set up the publisher: %s", strerror(errno));
    for (uint32_t i = 0; i < opt.publish_conns; i++) {
        struct pubconn *pc = &p->conns[i];
        pc->fd = publisher_connect();
        pc->expect = xrealloc(NULL, opt.pipeline * sizeof(*pc->expect));
        /* Edge-triggered: every wake-up reads until EAGAIN and writes what is queued. */
        struct epoll_event ev = {.events = EPOLLIN | EPOLLOUT | EPOLLET, .data.u32 = i};
        if (epoll_ctl(p->ep, EPOLL_CTL_ADD, pc->fd, &ev) < 0)
            die("epoll_ctl: %s", strerror(errno));
    }
}

static void out_append(struct pubconn *pc, const void *data, size_t n)
{
    if (pc->out_len + n > pc->out_cap) {
        pc->out_cap = (pc->out_len + n) * 2;
        pc->out = xrealloc(pc->out, pc->out_cap);
    }
    memcpy(pc->out + pc->out_len, data, n);
    pc->out_len += n;
}

/* "<seq> <send time in ns>", padded with " xxx..." to --size bytes when that is longer. */
static size_t make_payload(char *buf, uint32_t seq, uint64_t t)
{
    size_t n = (size_t)sprintf(buf, "%u %" PRIu64, seq, t);
    if (n + 1 < opt.size) {
        buf[n] = ' ';
        memset(buf + n + 1, 'x', opt.size - n - 1);
        n = opt.size;
    }
    return n;
}

/*
 * Queues the next event on its channel's connection, stamped with time t. Returns false when
 * that connection's pipeline is full: events go out strictly in order, so that the channel of
 * the j-th event stays a function of j that the children can recount.
 */
static bool publisher_queue(struct publisher *p, uint64_t t)
{
    uint32_t chan = channel_of_event(p->published);
    struct pubconn *pc = &p->conns[chan % opt.publish_conns];
    char name[16], head[MAX_TEMPLATE + 256];
    int hlen;

    if (pc->inflight == opt.pipeline || pc->out_len - pc->out_off >= PUB_OUT_HIGH)
        return false;
    size_t plen = make_payload(p->payload, ++p->seq[chan], t);
    int nlen = snprintf(name, sizeof(name), "ch%u", chan);
    if (opt.http) {
        char path[MAX_TEMPLATE + 32];
        expand_template(opt.publish_path, name, path, sizeof(path));
        hlen = snprintf(head, sizeof(head),
                        "POST %s HTTP/1.1\r\nHost: %s\r\nContent-Type: text/plain\r\n"
                        "Content-Length: %zu\r\n\r\n",
                        path, opt.publish_host, plen);
    } else {
        hlen = snprintf(head, sizeof(head), "*3\r\n$7\r\nPUBLISH\r\n$%d\r\n%s\r\n$%zu\r\n", nlen,
                        name, plen);
    }
    out_append(pc, head, (size_t)hlen);
    out_append(pc, p->payload, plen);
    if (!opt.http)
        out_append(pc, "\r\n", 2);
    pc->expect[(pc->expect_head + pc->inflight) % opt.pipeline] =
        __atomic_load_n(&subs[chan], __ATOMIC_RELAXED);
    pc->inflight++;
    p->published++;
    if (!p->first_ns)
        p->first_ns = t;
    p->last_ns = t;
    return true;
}

static void publisher_flush(struct pubconn *pc)
{
    while (pc->out_off < pc->out_len) {
        ssize_t n = write(pc->fd, pc->out + pc->out_off, pc->out_len - pc->out_off);
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            die("publisher: write: %s", strerror(errno));
        pc->out_off += (size_t)n;
    }
    if (pc->out_off == pc->out_len) {
        pc->out_off = pc->out_len = 0;
    } else if (pc->out_off > pc->out_cap / 2) {
        memmove(pc->out, pc->out + pc->out_off, pc->out_len - pc->out_off);
        pc->out_len -= pc->out_off;
        pc->out_off = 0;
    }
}

/* Takes the oldest request off the connection's pipeline; returns the subscribers expected. */
static uint32_t publisher_pop(struct publisher *p, struct pubconn *pc)
{
    if (pc->inflight == 0)
        die("publisher: the server answered a request that was never sent");
    uint32_t expected = pc->expect[pc->expect_head];
    pc->expect_head = (pc->expect_head + 1) % opt.pipeline;
    pc->inflight--;
    p->replies++;
    return expected;
}

static void publisher_error(struct publisher *p, const char *text, size_t len)
{
    if (p->errors++ == 0)
        snprintf(p->first_error, sizeof(p->first_error), "%.*s", (int)len, text);
}

/* One RESP reply: its length, or 0 when it is incomplete. */
static size_t resp_reply(struct publisher *p, struct pubconn *pc, const char *s, size_t len)
{
    const char *crlf = memmem(s, len, "\r\n", 2);
    if (!crlf)
        return 0;
    uint32_t expected = publisher_pop(p, pc);
    if (s[0] == ':') {
        /* The feed counts the subscribers it handed the event to. A storm changes that count
         * while events are in flight, so only a quiet run can compare. */
        if (!opt.storm && strtoll(s + 1, NULL, 10) < (long long)expected)
            p->short_replies++;
    } else if (s[0] == '-' || s[0] == '+') {
        publisher_error(p, s, (size_t)(crlf - s));
    } else {
        die("publisher: unexpected RESP reply '%.*s'", (int)(crlf - s), s);
    }
    return (size_t)(crlf - s) + 2;
}

/* The length of a chunked body at s, or 0 when incomplete, -1 when malformed. */
static long chunked_length(const char *s, size_t len)
{
    size_t pos = 0;
    for (;;) {
        const char *nl = memchr(s + pos, '\n', len - pos);
        if (!nl)
            return 0;
        if (!isxdigit((unsigned char)s[pos]))
            return -1;
        unsigned long size = strtoul(s + pos, NULL, 16);
        pos = (size_t)(nl - s) + 1;
        if (size == 0) {
            /* Trailer fields, if any, then an empty line. */
            for (;;) {
                nl = memchr(s + pos, '\n', len - pos);
                if (!nl)
                    return 0;
                bool empty = nl - (s + pos) <= 1;
                pos = (size_t)(nl - s) + 1;
                if (empty)
                    return (long)pos;
            }
        }
        if (len - pos < size + 2)
            return 0;
        pos += size + 2;
    }
}

/*
 * The length of the HTTP response at s: 0 when incomplete, -1 when it cannot be framed on a
 * keep-alive connection (no Content-Length and not chunked).
 */
static long http_response_length(const char *s, size_t len, int *status)
{
    const char *end = memmem(s, len, "\r\n\r\n", 4);
    if (!end)
        return len > 65536 ? -1 : 0;
    size_t head = (size_t)(end - s) + 4;
    const char *l = memchr(s, '\n', head) + 1, *v;
    size_t vlen;
    long body = -1;
    bool chunked = false;

    *status = status_code(s, (size_t)(l - s - 1));
    if (!*status)
        return -1;
    while (l < end + 2) {
        const char *nl = memchr(l, '\n', (size_t)(end + 2 - l));
        if (header_is(l, (size_t)(nl - l), "content-length", &v, &vlen))
            body = strtol(v, NULL, 10);
        else if (header_is(l, (size_t)(nl - l), "transfer-encoding", &v, &vlen))
            chunked = contains_nocase(v, vlen, "chunked");
        l = nl + 1;
    }
    if (*status == 204 || *status == 304)
        return (long)head;
    if (chunked) {
        long n = chunked_length(s + head, len - head);
        return n > 0 ? (long)head + n : n;
    }
    if (body < 0)
        return -1;
    return len >= head + (size_t)body ? (long)head + body : 0;
}

/* One HTTP response: its length, or 0 when it is incomplete. */
static size_t http_reply(struct publisher *p, struct pubconn *pc, const char *s, size_t len)
{
    int status;
    long n = http_response_length(s, len, &status);
    if (n == 0)
        return 0;
    if (n < 0)
        die("publisher: cannot frame the HTTP response (it needs Content-Length or chunked): "
            "'%.40s'",
            s);
    publisher_pop(p, pc);
    if (status < 200 || status > 299)
        publisher_error(p, s, strcspn(s, "\r\n"));
    return (size_t)n;
}

static void publisher_read(struct publisher *p, struct pubconn *pc)
{
    for (;;) {
        if (pc->in_cap - pc->in_len < 4096) {
            pc->in_cap = pc->in_cap ? pc->in_cap * 2 : 16384;
            pc->in = xrealloc(pc->in, pc->in_cap + 1);
        }
        ssize_t n = read(pc->fd, pc->in + pc->in_len, pc->in_cap - pc->in_len);
        if (n == 0)
            die("publisher: the server closed the connection");
        if (n < 0 && errno == EINTR)
            continue;
        if (n < 0 && errno == EAGAIN)
            break;
        if (n < 0)
            die("publisher: read: %s", strerror(errno));
        pc->in_len += (size_t)n;
    }
    pc->in[pc->in_len] = '\0'; /* for the messages of die() */
    size_t off = 0, used;
    while (off < pc->in_len &&
           (used = opt.http ? http_reply(p, pc, pc->in + off, pc->in_len - off)
                            : resp_reply(p, pc, pc->in + off, pc->in_len - off)))
        off += used;
    memmove(pc->in, pc->in + off, pc->in_len - off);
    pc->in_len -= off;
}

static bool publisher_idle(const struct publisher *p)
{
    for (uint32_t i = 0; i < opt.publish_conns; i++)
        if (p->conns[i].inflight)
            return false;
    return true;
}

/* ---------------------------------------------------------------------------------------------
 * The run (parent): phases, measurements
 */

/* Everything the parent measured, for the report. */
struct results {
    unsigned nprocs;
    int64_t rss_before, rss_after, slab_before, slab_after;
    uint64_t settled_ns;
    bool timed_out;
    bool drained;        /* every client got every event within --drain-timeout */
    double server_cpu;   /* seconds during phase 2; -1 when unknown */
    double phase2_s;     /* from the first publish until every client had everything */
    double busiest;      /* the busiest load-generator process in phase 2, 0-1 */
    int busiest_proc;    /* -1: the parent (publisher), else the child index */
    double machine_busy; /* share of all CPUs busy during phase 2, 0-1 */
    double loadgen_cpu;  /* phase 2, all load-generator processes */
    double loadgen_total_cpu;
    uint64_t storm_ns;
    struct publisher pub;
    /* The children's totals. */
    struct child_board sum;
    uint64_t resumed_ns, last_delivery_ns;
    bool all_reported;
};

static uint64_t deadline_ns;

/* Dies when a child exited before it was told to: its clients' results would be missing. */
static void check_children(void)
{
    int st;
    pid_t pid = waitpid(-1, &st, WNOHANG);
    if (pid <= 0)
        return;
    for (unsigned k = 0; k < nchildren; k++)
        if (child_pids[k] == pid)
            child_pids[k] = 0;
    if (WIFSIGNALED(st))
        die("a load-generator process was killed by signal %d", WTERMSIG(st));
    die("a load-generator process exited early with status %d", WEXITSTATUS(st));
}

static void command_children(char cmd, int *cmd_fds)
{
    for (unsigned k = 0; k < nchildren; k++)
        if (write(cmd_fds[k], &cmd, 1) != 1)
            die("cannot command child %u: %s", k, strerror(errno));
}

static void fork_children(int *cmd_fds)
{
    pid_t parent = getpid();
    fflush(NULL);
    for (unsigned k = 0; k < nchildren; k++) {
        int fds[2];
        uint32_t first = k * opt.per_process;
        uint32_t count = opt.n - first < opt.per_process ? opt.n - first : opt.per_process;
        if (pipe2(fds, O_CLOEXEC) < 0)
            die("pipe: %s", strerror(errno));
        pid_t pid = fork();
        if (pid < 0)
            die("fork: %s", strerror(errno));
        if (pid == 0) {
            for (unsigned j = 0; j < k; j++)
                close(cmd_fds[j]);
            close(fds[1]);
            child_main(k, first, count, fds[0], parent);
        }
        close(fds[0]);
        cmd_fds[k] = fds[1];
        child_pids[k] = pid;
    }
}

/* Phase 1: waits until every client is subscribed or has failed. */
static void wait_subscribed(struct results *r)
{
    for (;;) {
        uint32_t settled = 0;
        for (unsigned k = 0; k < nchildren; k++)
            settled += board_get(boards[k].established) + board_get(boards[k].failed);
        if (settled == opt.n)
            break;
        if (now_ns() > deadline_ns) {
            r->timed_out = true;
            return;
        }
        check_children();
        sleep_ms(2);
    }
    uint32_t established = 0;
    for (unsigned k = 0; k < nchildren; k++) {
        uint64_t t = board_get(boards[k].settled_ns);
        if (t > r->settled_ns)
            r->settled_ns = t;
        established += board_get(boards[k].established);
    }
    fprintf(stderr, "loadgen: %u of %u clients subscribed in %.3f s\n", established, opt.n,
            (double)(r->settled_ns - shared->start_ns) / NS);
}

static void hold(struct results *r)
{
    uint64_t end = now_ns() + (uint64_t)(opt.hold * NS);
    while (now_ns() < end) {
        if (now_ns() > deadline_ns) {
            r->timed_out = true;
            return;
        }
        check_children();
        sleep_ms(10);
    }
}

/*
 * Phase 2: publishes --events events at --rate (or as fast as the server answers), triggers
 * the storm halfway when asked, and waits for the last reply.
 */
static void publish(struct results *r, int *cmd_fds)
{
    struct publisher *p = &r->pub;
    uint64_t t0 = now_ns(), storm_at = opt.storm ? opt.events / 2 : UINT64_MAX;
    struct epoll_event evs[64];

    while (p->published < opt.events || !publisher_idle(p)) {
        uint64_t t = now_ns();
        if (t > deadline_ns) {
            r->timed_out = true;
            return;
        }
        uint64_t due = opt.events;
        if (opt.rate > 0) {
            due = (uint64_t)((double)(t - t0) / NS * opt.rate) + 1;
            due = due < opt.events ? due : opt.events;
        }
        if (p->published < storm_at && due > storm_at)
            due = storm_at;
        bool stalled = false;
        while (p->published < due && !stalled)
            stalled = !publisher_queue(p, t);
        p->stalls += stalled;
        for (uint32_t i = 0; i < opt.publish_conns; i++)
            publisher_flush(&p->conns[i]);
        if (p->published == storm_at && !r->storm_ns) {
            r->storm_ns = now_ns();
            command_children(CMD_STORM, cmd_fds);
        }
        int wait_ms = 100;
        if (opt.rate > 0 && p->published < opt.events && !stalled) {
            double next = (double)t0 + (double)p->published / opt.rate * NS;
            double ms = (next - (double)now_ns()) / 1e6;
            wait_ms = ms <= 0 ? 0 : ms >= 100 ? 100 : (int)ceil(ms);
        }
        int n = epoll_wait(p->ep, evs, 64, wait_ms);
        for (int i = 0; i < n; i++)
            publisher_read(p, &p->conns[evs[i].data.u32]);
        check_children();
    }
}

/* Waits until every child reports that its clients have every event, or the drain ends. */
static void drain(struct results *r)
{
    uint64_t end = now_ns() + (uint64_t)(opt.drain_timeout * NS);
    for (;;) {
        unsigned complete = 0;
        for (unsigned k = 0; k < nchildren; k++)
            complete += board_get(boards[k].complete) != 0;
        if (complete == nchildren) {
            r->drained = true;
            return;
        }
        uint64_t t = now_ns();
        if (t > deadline_ns) {
            r->timed_out = true;
            return;
        }
        if (t > end)
            return;
        check_children();
        sleep_ms(1);
    }
}

/*
 * Asks every child for its totals, waits for them, and adds them up. A child closes up to
 * 15 000 sockets on its way out, which takes seconds on a saturated machine: give it 60.
 */
static void collect(struct results *r, int *cmd_fds)
{
    uint64_t end = now_ns() + 60 * (uint64_t)NS;
    unsigned left = nchildren, reported = 0;
    struct child_board *s = &r->sum;
    bool storm_unfinished = false;

    command_children(CMD_QUIT, cmd_fds);
    while (left && now_ns() < end) {
        int st;
        pid_t pid = waitpid(-1, &st, WNOHANG);
        if (pid <= 0) {
            sleep_ms(1);
            continue;
        }
        for (unsigned k = 0; k < nchildren; k++) {
            if (child_pids[k] != pid)
                continue;
            child_pids[k] = 0;
            left--;
            if (!WIFEXITED(st) || WEXITSTATUS(st) != EXIT_CLEAN)
                continue;
            const struct child_board *b = &boards[k];
            reported++;
            s->deliveries += b->deliveries;
            s->lost += b->lost;
            s->dup += b->dup;
            s->ooo += b->ooo;
            s->undelivered += b->undelivered;
            s->malformed += b->malformed;
            hist_merge(&s->hist, &b->hist);
        }
    }
    kill_children();
    r->all_reported = reported == nchildren;
    for (unsigned k = 0; k < nchildren; k++) {
        const struct child_board *b = &boards[k];
        s->established += b->established;
        s->failed += b->failed;
        s->fail_connect += b->fail_connect;
        s->fail_http += b->fail_http;
        s->fail_closed += b->fail_closed;
        s->fail_timeout += b->fail_timeout;
        if (!s->first_errno)
            s->first_errno = b->first_errno;
        if (!s->first_status)
            s->first_status = b->first_status;
        s->disconnects += b->disconnects;
        s->resumed += b->resumed;
        s->resume_failed += b->resume_failed;
        if (b->last_delivery_ns > r->last_delivery_ns)
            r->last_delivery_ns = b->last_delivery_ns;
        if (b->resumed_ns > r->resumed_ns)
            r->resumed_ns = b->resumed_ns;
        if (!b->resumed_ns)
            storm_unfinished = true;
    }
    /* The storm is over only when every process has seen all of its clients back. */
    if (storm_unfinished)
        r->resumed_ns = 0;
}

/* CPU of the publisher and each child, for the bottleneck check. */
static void loadgen_cpu(double *cpu)
{
    cpu[0] = process_cpu(getpid());
    for (unsigned k = 0; k < nchildren; k++)
        cpu[k + 1] = process_cpu(child_pids[k]);
}

/* Phase 2 as a whole: publishing, draining, and the CPU that both cost. */
static void phase2(struct results *r, int *cmd_fds)
{
    double cpu0[MAX_PROCS + 1], cpu1[MAX_PROCS + 1];
    uint64_t busy0, total0, busy1, total1;
    double server0 = server_cpu();
    uint64_t t0 = now_ns();

    loadgen_cpu(cpu0);
    machine_cpu(&busy0, &total0);
    if (opt.events > 0)
        publish(r, cmd_fds);
    board_set(shared->published, r->pub.published);
    command_children(CMD_FINAL, cmd_fds);
    if (!r->timed_out)
        drain(r);
    uint64_t t1 = now_ns();
    double server1 = server_cpu();
    loadgen_cpu(cpu1);
    machine_cpu(&busy1, &total1);

    r->phase2_s = (double)(t1 - t0) / NS;
    r->server_cpu = server0 >= 0 && server1 >= 0 ? server1 - server0 : -1;
    r->machine_busy = total1 > total0 ? (double)(busy1 - busy0) / (double)(total1 - total0) : 0;
    r->busiest_proc = -1;
    for (unsigned i = 0; i <= nchildren; i++) {
        double used = cpu1[i] - cpu0[i];
        r->loadgen_cpu += used;
        if (used / r->phase2_s > r->busiest) {
            r->busiest = used / r->phase2_s;
            r->busiest_proc = (int)i - 1;
        }
    }
}

/* ---------------------------------------------------------------------------------------------
 * Report
 */

/* A JSON number, or null when the figure was not measured. */
static void json_num(const char *key, double v, bool known, bool more)
{
    if (known)
        printf("\"%s\":%.10g%s", key, v, more ? "," : "");
    else
        printf("\"%s\":null%s", key, more ? "," : "");
}

/* Prints the summary and the JSON line; returns the exit status. */
static int report(struct results *r)
{
    const struct child_board *s = &r->sum;
    const struct publisher *p = &r->pub;
    uint32_t est = s->established;
    double subscribe_s = r->settled_ns ? (double)(r->settled_ns - shared->start_ns) / NS : -1;
    bool mem_known = r->rss_before >= 0 && r->rss_after >= 0 && est > 0;
    double rss_pc = mem_known ? (double)(r->rss_after - r->rss_before) / est : 0;
    bool slab_known = r->slab_before >= 0 && r->slab_after >= 0 && est > 0;
    double slab_pc = slab_known ? (double)(r->slab_after - r->slab_before) / est : 0;
    double span = r->last_delivery_ns > p->first_ns && p->first_ns
                      ? (double)(r->last_delivery_ns - p->first_ns) / NS
                      : 0;
    double dps = span > 0 ? (double)s->deliveries / span : 0;
    bool cpu_known = r->server_cpu >= 0 && s->deliveries > 0;
    double cpu_per_m = cpu_known ? r->server_cpu / ((double)s->deliveries / 1e6) : 0;
    bool resume_known = opt.storm && r->storm_ns && r->resumed_ns;
    double resume_s = resume_known ? (double)(r->resumed_ns - r->storm_ns) / NS : 0;
    uint64_t p50 = hist_quantile(&s->hist, 0.5), p99 = hist_quantile(&s->hist, 0.99);
    uint64_t p999 = hist_quantile(&s->hist, 0.999);
    long ncpu = sysconf(_SC_NPROCESSORS_ONLN);
    char busiest[32] = "publisher";

    if (r->busiest_proc >= 0)
        snprintf(busiest, sizeof(busiest), "child %d", r->busiest_proc);

    printf("loadgen: %u clients of %s (%s) on %u channel%s, %u process%s\n", opt.n, opt.target_text,
           opt.path, opt.channels, opt.channels == 1 ? "" : "s", r->nprocs,
           r->nprocs == 1 ? "" : "es");
    printf("  connections  %u established, %u failed", est, s->failed);
    if (s->fail_connect)
        printf("; connect: %u (%s)", s->fail_connect, strerror(s->first_errno));
    if (s->fail_http)
        printf("; HTTP: %u (first status %d)", s->fail_http, s->first_status);
    if (s->fail_closed)
        printf("; closed by the server: %u", s->fail_closed);
    if (s->fail_timeout)
        printf("; no answer: %u", s->fail_timeout);
    if (subscribe_s >= 0)
        printf("; %s in %.3f s", s->failed ? "settled" : "all subscribed", subscribe_s);
    printf("\n");
    if (mem_known)
        printf("  server RSS   %+.0f bytes per connection (%u process%s)%s\n", rss_pc,
               opt.nserver_pids, opt.nserver_pids == 1 ? "" : "es",
               rss_pc < 16 ? "; a server reuses what earlier connections left, so measure a "
                             "fresh one"
                           : "");
    else
        printf("  server RSS   not measured (--server-pid or --server-pids-from-name)\n");
    if (slab_known)
        printf("  kernel slab  %+.0f bytes per connection (machine-wide, so both ends of each "
               "connection, and noisy for small N)\n",
               slab_pc);
    if (opt.events > 0) {
        double pub_s = p->last_ns > p->first_ns ? (double)(p->last_ns - p->first_ns) / NS : 0;
        printf("  published    %" PRIu64 " of %" PRIu64 " events of %u bytes in %.3f s",
               p->published, opt.events, opt.size, pub_s);
        if (pub_s > 0)
            printf(" (%.0f/s%s)", (double)(p->published - 1) / pub_s,
                   opt.rate > 0 ? "" : ", unpaced");
        printf("; %" PRIu64 " replies, %" PRIu64 " errors%s%s\n", p->replies, p->errors,
               p->errors ? ", first: " : "", p->first_error);
        if (p->short_replies)
            printf("  WARNING: %" PRIu64 " publish replies counted fewer subscribers than were "
                   "connected\n",
                   p->short_replies);
    }
    printf("  delivered    %" PRIu64 " events", s->deliveries);
    if (span > 0)
        printf(" in %.3f s after the first publish = %.0f per second", span, dps);
    printf("\n  integrity    lost %" PRIu64, s->lost);
    if (s->undelivered)
        printf(" (%" PRIu64 " still due to open streams when the drain ended)", s->undelivered);
    printf(", duplicated %" PRIu64 ", out of order %" PRIu64 ", disconnected %u, malformed %" PRIu64
           "\n",
           s->dup, s->ooo, s->disconnects, s->malformed);
    if (s->deliveries)
        printf("  latency      p50 %" PRIu64 " us, p99 %" PRIu64 " us, p99.9 %" PRIu64
               " us, max %" PRIu64 " us\n",
               p50, p99, p999, s->hist.max_us);
    if (cpu_known)
        printf("  server CPU   %.2f s in phase 2 = %.3f s per million deliveries\n", r->server_cpu,
               cpu_per_m);
    if (opt.storm) {
        printf("  storm        %u of %u streams resumed", s->resumed, est);
        if (resume_known)
            printf(" in %.3f s", resume_s);
        printf(", %u failed to (losses and duplicates above include the storm)\n",
               s->resume_failed);
    }
    printf("  loadgen CPU  %.2f s in phase 2 (%.1f s); busiest process %s at %.0f%%; machine "
           "%.0f%% busy on %ld CPUs; %.2f s in all\n",
           r->loadgen_cpu, r->phase2_s, busiest, r->busiest * 100, r->machine_busy * 100, ncpu,
           r->loadgen_total_cpu);

    /* Am I the bottleneck? Only a long enough phase says: CPU times come in 10 ms ticks. */
    bool bottleneck = false, saturated = false;
    if (r->phase2_s >= 0.5 && r->busiest > 0.9) {
        bottleneck = true;
        printf("WARNING: load generator was the bottleneck: its %s was %.0f%% busy in phase 2; "
               "latency and throughput include its own queueing\n",
               busiest, r->busiest * 100);
    }
    if (opt.rate > 0 && p->published > 1 && p->last_ns > p->first_ns) {
        double achieved = (double)(p->published - 1) / ((double)(p->last_ns - p->first_ns) / NS);
        if (achieved < 0.95 * opt.rate && !p->stalls) {
            bottleneck = true;
            printf("WARNING: load generator was the bottleneck: it published %.0f events/s of "
                   "the %.0f asked for\n",
                   achieved, opt.rate);
        } else if (achieved < 0.95 * opt.rate) {
            printf("NOTE: the server held the publisher to %.0f events/s of the %.0f asked for "
                   "(its pipeline was full %" PRIu64 " times)\n",
                   achieved, opt.rate, p->stalls);
        }
    }
    if (r->phase2_s >= 0.5 && r->machine_busy > 0.9) {
        saturated = true;
        printf("NOTE: the CPUs were %.0f%% busy in phase 2; the load generator used %.0f%% of "
               "them, which the server could not have\n",
               r->machine_busy * 100, r->loadgen_cpu / (r->phase2_s * (double)ncpu) * 100);
    }
    if (!r->drained && !r->timed_out && opt.events > 0)
        printf("WARNING: some clients still missed events when --drain-timeout (%.0f s) ended\n",
               opt.drain_timeout);
    if (r->timed_out)
        printf("WARNING: --timeout of %.0f s reached; figures cover what happened until then\n",
               opt.timeout);
    if (!r->all_reported)
        printf("WARNING: a load-generator process did not report; its clients are missing\n");

    printf("{\"target\":\"%s\",\"n\":%u,\"channels\":%u,\"processes\":%u,\"established\":%u,"
           "\"failed\":%u,",
           opt.target_text, opt.n, opt.channels, r->nprocs, est, s->failed);
    json_num("subscribe_seconds", subscribe_s, subscribe_s >= 0, true);
    json_num("rss_bytes_per_conn", rss_pc, mem_known, true);
    json_num("slab_bytes_per_conn", slab_pc, slab_known, true);
    printf("\"events\":%" PRIu64 ",\"size\":%u,\"published\":%" PRIu64
           ",\"publish_errors\":%" PRIu64 ",\"deliveries\":%" PRIu64 ",",
           opt.events, opt.size, p->published, p->errors, s->deliveries);
    json_num("deliveries_per_sec", dps, span > 0, true);
    printf("\"lost\":%" PRIu64 ",\"undelivered\":%" PRIu64 ",\"dup\":%" PRIu64 ",\"ooo\":%" PRIu64
           ",\"disconnects\":%u,",
           s->lost, s->undelivered, s->dup, s->ooo, s->disconnects);
    json_num("lat_p50_us", (double)p50, s->deliveries > 0, true);
    json_num("lat_p99_us", (double)p99, s->deliveries > 0, true);
    json_num("lat_p999_us", (double)p999, s->deliveries > 0, true);
    json_num("lat_max_us", (double)s->hist.max_us, s->deliveries > 0, true);
    json_num("server_cpu_s_per_M", cpu_per_m, cpu_known, true);
    if (opt.storm)
        json_num("resume_seconds", resume_s, resume_known, true);
    printf("\"loadgen_bottleneck\":%s,\"cpu_saturated\":%s,\"timed_out\":%s}\n",
           bottleneck ? "true" : "false", saturated ? "true" : "false",
           r->timed_out ? "true" : "false");

    bool flawless = est == opt.n && s->lost == 0 && s->dup == 0 && s->ooo == 0 &&
                    s->malformed == 0 && p->errors == 0 && p->published == opt.events &&
                    !r->timed_out && r->all_reported;
    return flawless ? EXIT_CLEAN : EXIT_FLAWED;
}

/* The run: connect and subscribe, measure memory, hold, publish and drain, then report. */
static int run(void)
{
    static struct results r;
    int cmd_fds[MAX_PROCS];

    nchildren = r.nprocs = (opt.n + opt.per_process - 1) / opt.per_process;
    shared = shared_alloc(sizeof(*shared));
    boards = shared_alloc(nchildren * sizeof(*boards));
    subs = shared_alloc(opt.channels * sizeof(*subs));
    if (opt.events > 0)
        publisher_open(&r.pub);

    r.rss_before = server_rss();
    r.slab_before = kernel_slab();
    shared->start_ns = now_ns();
    deadline_ns = shared->start_ns + (uint64_t)(opt.timeout * NS);
    fork_children(cmd_fds);

    wait_subscribed(&r);
    r.rss_after = server_rss();
    r.slab_after = kernel_slab();
    if (!r.timed_out)
        hold(&r);
    if (!r.timed_out)
        phase2(&r, cmd_fds);
    else
        command_children(CMD_FINAL, cmd_fds);
    collect(&r, cmd_fds);

    struct rusage self, children;
    getrusage(RUSAGE_SELF, &self);
    getrusage(RUSAGE_CHILDREN, &children);
    r.loadgen_total_cpu = (double)(self.ru_utime.tv_sec + self.ru_stime.tv_sec +
                                   children.ru_utime.tv_sec + children.ru_stime.tv_sec) +
                          (double)(self.ru_utime.tv_usec + self.ru_stime.tv_usec +
                                   children.ru_utime.tv_usec + children.ru_stime.tv_usec) /
                              1e6;
    return report(&r);
}

int main(int argc, char **argv)
{
    struct rlimit rl;

    parse_options(argc, argv);
    signal(SIGPIPE, SIG_IGN);
    /* Raise the soft descriptor limit to the hard one; each child needs --per-process + a few. */
    if (getrlimit(RLIMIT_NOFILE, &rl) == 0) {
        rl.rlim_cur = rl.rlim_max;
        setrlimit(RLIMIT_NOFILE, &rl);
        if ((opt.n < opt.per_process ? opt.n : opt.per_process) + 64 > rl.rlim_cur)
            usage_error("--per-process %u needs more descriptors than RLIMIT_NOFILE (%lu) allows",
                        opt.per_process, (unsigned long)rl.rlim_cur);
    }
    return run();
}
