/*
 * sleeper: the whole program of a demo/test container.
 *
 *   sleeper [SECONDS]                 sleep (forever without SECONDS)
 *   sleeper --listen PORT [SECONDS]   also serve 127.0.0.1:PORT over TCP: every
 *                                     connection gets one fixed line, then closes
 *
 * It runs as PID 1 of its PID namespace, where signals without a handler are
 * ignored, so SIGTERM and SIGINT get handlers that exit 0. SIGALRM ends the
 * timed sleep the same way.
 */
#include <errno.h>
#include <netinet/in.h>
#include <signal.h>
#include <stdlib.h>
#include <string.h>
#include <sys/socket.h>
#include <time.h>
#include <unistd.h>

static const char greeting[] = "crashcart sleeper\n";

static void on_exit_signal(int sig) {
  (void)sig;
  _exit(0);
}

static void usage(void) {
  static const char msg[] = "usage: sleeper [--listen PORT] [SECONDS]\n";
  if (write(2, msg, sizeof msg - 1) < 0) {
    /* nothing useful to do */
  }
  _exit(2);
}

/* Parses a decimal number in [min, max]; anything else is a usage error. */
static unsigned long parse_num(const char *s, unsigned long min, unsigned long max) {
  char *end;
  errno = 0;
  unsigned long v = strtoul(s, &end, 10);
  if (errno || end == s || *end || s[0] == '-' || v < min || v > max) usage();
  return v;
}

static int listen_on(unsigned short port) {
  int fd = socket(AF_INET, SOCK_STREAM | SOCK_CLOEXEC, 0);
  if (fd < 0) return -1;
  int one = 1;
  setsockopt(fd, SOL_SOCKET, SO_REUSEADDR, &one, sizeof one);
  struct sockaddr_in addr;
  memset(&addr, 0, sizeof addr);
  addr.sin_family = AF_INET;
  addr.sin_port = htons(port);
  addr.sin_addr.s_addr = htonl(INADDR_LOOPBACK);
  if (bind(fd, (struct sockaddr *)&addr, sizeof addr) < 0 || listen(fd, 16) < 0) {
    close(fd);
    return -1;
  }
  return fd;
}

static void serve(int lfd) {
  for (;;) {
    int c = accept(lfd, NULL, NULL);
    if (c < 0) {
      /* EINTR and transient errors (ECONNABORTED, EMFILE...) must not end the
         loop; back off briefly so a persistent error cannot spin the CPU */
      if (errno != EINTR) {
        struct timespec ts = {0, 10 * 1000 * 1000};
        nanosleep(&ts, NULL);
      }
      continue;
    }
    ssize_t n = write(c, greeting, sizeof greeting - 1);
    (void)n;
    close(c);
  }
}

int main(int argc, char **argv) {
  int i = 1;
  long port = -1;
  if (i < argc && strcmp(argv[i], "--listen") == 0) {
    if (i + 1 >= argc) usage();
    port = (long)parse_num(argv[i + 1], 1, 65535);
    i += 2;
  }
  unsigned long seconds = 0;
  if (i < argc) seconds = parse_num(argv[i++], 1, 100000000UL);
  if (i < argc) usage();

  struct sigaction sa;
  memset(&sa, 0, sizeof sa);
  sa.sa_handler = on_exit_signal;
  sigemptyset(&sa.sa_mask);
  sigaction(SIGTERM, &sa, NULL);
  sigaction(SIGINT, &sa, NULL);
  sigaction(SIGALRM, &sa, NULL);
  /* a client that hangs up early must not kill the server */
  signal(SIGPIPE, SIG_IGN);

  int lfd = -1;
  if (port > 0) {
    lfd = listen_on((unsigned short)port);
    if (lfd < 0) {
      static const char msg[] = "sleeper: cannot listen\n";
      if (write(2, msg, sizeof msg - 1) < 0) {
        /* ignore */
      }
      return 1;
    }
  }
  /* alarm() takes unsigned int seconds; the parse bound keeps it in range */
  if (seconds) alarm((unsigned)seconds);

  if (lfd >= 0) serve(lfd);
  for (;;) pause();
}
