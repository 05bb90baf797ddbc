/*
 * gatehouse-exec <expected-ppid> <signal> [--listen-fd N] -- program [args...]
 *
 * Gives a worker the parent-death signal before it becomes the real program,
 * so that programs we cannot change (php-cgi, Perl FCGI apps) die with the
 * pool manager even when it is killed with SIGKILL. PR_SET_PDEATHSIG survives
 * execve (except for set-id programs), so it must be set here, in between.
 *
 * Steps, in an order that leaves no window:
 *   1. prctl(PR_SET_PDEATHSIG, signal);
 *   2. if getppid() != expected-ppid the manager died during the spawn
 *      (before step 1 could protect us): exit 1 instead of running orphaned;
 *   3. reset every signal disposition to default and unblock all signals,
 *      so the program starts as if exec'd by a shell (Node ignores SIGPIPE);
 *   4. with --listen-fd N: move fd N to fd 0. The pool hands its listening
 *      socket over at fd 3, not 0, because libuv's spawn clears O_NONBLOCK
 *      on a child's fds 0-2, and that flag belongs to the socket shared by
 *      the running workers: Node workers would then block in accept() while
 *      holding connections they accepted but not yet read. dup2 leaves the
 *      flag as it is;
 *   5. mark every fd >= 3 close-on-exec: the worker inherits exactly fd 0
 *      (the listening socket), 1 and 2, whatever the manager's own parent
 *      leaked into it;
 *   6. execvp. Failure exits 127 (not found) or 126 (not runnable), as shells do.
 */
#define _GNU_SOURCE
#include <dirent.h>
#include <errno.h>
#include <fcntl.h>
#include <signal.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/prctl.h>
#include <sys/syscall.h>
#include <unistd.h>

#ifndef CLOSE_RANGE_CLOEXEC
#define CLOSE_RANGE_CLOEXEC (1U << 2)
#endif

static const struct { const char *name; int num; } signal_names[] = {
    {"HUP", SIGHUP}, {"INT", SIGINT}, {"QUIT", SIGQUIT}, {"KILL", SIGKILL},
    {"USR1", SIGUSR1}, {"USR2", SIGUSR2}, {"TERM", SIGTERM}, {"ABRT", SIGABRT},
};

static void usage(void) {
  fputs("usage: gatehouse-exec <expected-ppid> <signal> [--listen-fd N] -- program [args...]\n", stderr);
  exit(2);
}

/* Accepts a number, "KILL" or "SIGKILL". */
static int parse_signal(const char *s) {
  char *end;
  long n = strtol(s, &end, 10);
  if (*s != '\0' && *end == '\0') return (n > 0 && n < NSIG) ? (int)n : -1;
  if (strncmp(s, "SIG", 3) == 0) s += 3;
  for (size_t i = 0; i < sizeof signal_names / sizeof signal_names[0]; i++)
    if (strcmp(s, signal_names[i].name) == 0) return signal_names[i].num;
  return -1;
}

static void cloexec_from_3(void) {
#ifdef SYS_close_range
  if (syscall(SYS_close_range, 3U, ~0U, CLOSE_RANGE_CLOEXEC) == 0) return;
#endif
  /* Kernels before 5.11: walk /proc/self/fd. */
  DIR *d = opendir("/proc/self/fd");
  if (d == NULL) return;
  int self = dirfd(d);
  struct dirent *e;
  while ((e = readdir(d)) != NULL) {
    int fd = atoi(e->d_name);
    if (fd >= 3 && fd != self) fcntl(fd, F_SETFD, FD_CLOEXEC);
  }
  closedir(d);
}

int main(int argc, char **argv) {
  int listen_fd = -1;
  int at = 3; /* where "--" is */
  if (argc > 4 && strcmp(argv[3], "--listen-fd") == 0) {
    char *e;
    long n = strtol(argv[4], &e, 10);
    if (*argv[4] == '\0' || *e != '\0' || n < 3 || n > 65535) usage();
    listen_fd = (int)n;
    at = 5;
  }
  if (argc < at + 2 || strcmp(argv[at], "--") != 0) usage();
  char **program = &argv[at + 1];
  char *end;
  long expected_ppid = strtol(argv[1], &end, 10);
  if (*argv[1] == '\0' || *end != '\0' || expected_ppid <= 1) usage();
  int sig = parse_signal(argv[2]);
  if (sig < 0) usage();

  if (prctl(PR_SET_PDEATHSIG, (unsigned long)sig, 0, 0, 0) < 0) {
    perror("gatehouse-exec: prctl(PR_SET_PDEATHSIG)");
    return 1;
  }
  if ((long)getppid() != expected_ppid) {
    fprintf(stderr, "gatehouse-exec: manager (pid %ld) died before %s started\n", expected_ppid, program[0]);
    return 1;
  }

  struct sigaction dfl;
  memset(&dfl, 0, sizeof dfl);
  dfl.sa_handler = SIG_DFL;
  sigemptyset(&dfl.sa_mask);
  for (int s = 1; s < NSIG; s++) {
    if (s == SIGKILL || s == SIGSTOP) continue;
    sigaction(s, &dfl, NULL); /* EINVAL for the libc-reserved real-time signals: ignore */
  }
  sigset_t none;
  sigemptyset(&none);
  sigprocmask(SIG_SETMASK, &none, NULL);

  if (listen_fd >= 0) {
    if (dup2(listen_fd, 0) < 0) {
      perror("gatehouse-exec: dup2(--listen-fd, 0)");
      return 1;
    }
    close(listen_fd);
  }
  cloexec_from_3();

  execvp(program[0], program);
  int e = errno;
  fprintf(stderr, "gatehouse-exec: %s: %s\n", program[0], strerror(e));
  return e == ENOENT ? 127 : 126;
}
