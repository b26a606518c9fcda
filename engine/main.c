/*
 * ringcast: command line, configuration, and hand-off to the server.
 */
#include <getopt.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "ringcast/config.h"
#include "ringcast/server.h"

static void usage(FILE *out)
{
    fprintf(out,
            "Usage: ringcast [-c FILE] [--check-config]\n"
            "\n"
            "A push server: holds Server-Sent Events streams and fans out events that backends\n"
            "publish on a local UNIX socket (RESP, so `redis-cli -s SOCKET PUBLISH ch msg`).\n"
            "\n"
            "  -c, --config FILE   read the configuration from FILE (ini); without it the\n"
            "                      built-in defaults apply (127.0.0.1:8080, ./ringcast.sock)\n"
            "      --check-config  validate the configuration and exit\n"
            "  -v, --version       print the version and exit\n"
            "  -h, --help          print this help and exit\n"
            "\n"
            "Every key and its default is documented in conf/ringcast.ini. SIGHUP reloads FILE;\n"
            "the keys marked (restart) there keep their running values until a restart.\n");
}

int main(int argc, char **argv)
{
    static const struct option opts[] = {
        {"config", required_argument, NULL, 'c'},
        {"check-config", no_argument, NULL, 'C'},
        {"version", no_argument, NULL, 'v'},
        {"help", no_argument, NULL, 'h'},
        {NULL, 0, NULL, 0},
    };
    const char *path = NULL;
    int check = 0, opt;
    struct rc_config cfg;
    char err[512];

    while ((opt = getopt_long(argc, argv, "c:vh", opts, NULL)) != -1) {
        switch (opt) {
        case 'c':
            path = optarg;
            break;
        case 'C':
            check = 1;
            break;
        case 'v':
            printf("ringcast %s\n", RC_VERSION);
            return 0;
        case 'h':
            usage(stdout);
            return 0;
        default:
            usage(stderr);
            return 2;
        }
    }
    if (optind != argc) {
        fprintf(stderr, "ringcast: unexpected argument '%s'\n", argv[optind]);
        usage(stderr);
        return 2;
    }
    rc_config_defaults(&cfg);
    if (path && rc_config_load_file(&cfg, path, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s\n", err);
        return 1;
    }
    if (rc_config_validate(&cfg, err, sizeof(err)) < 0) {
        fprintf(stderr, "%s: %s\n", path ? path : "built-in configuration", err);
        return 1;
    }
    if (check) {
        printf("%s: configuration OK\n", path ? path : "built-in configuration");
        return 0;
    }
    return rc_server_run(&cfg, path);
}
